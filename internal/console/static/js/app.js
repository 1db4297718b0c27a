// The console's shell: the login page, the frame every page shares (navigation, who is logged
// in, the open-mode warning), and the router (#/page/args in the URL's fragment, so the server
// only ever serves /).
import {h, replace, notice} from './dom.js';
import {api, setSession, ApiError} from './api.js';
import overview from './pages/overview.js';
import sessions from './pages/sessions.js';
import topics from './pages/topics.js';
import services from './pages/services.js';
import webhooks from './pages/webhooks.js';
import mailbox from './pages/mailbox.js';
import access from './pages/access.js';

const pages = [
  {id: 'overview', title: 'Overview', render: overview},
  {id: 'sessions', title: 'Sessions', render: sessions, need: me => me.admin.sessions},
  {id: 'topics', title: 'Topics', render: topics},
  {id: 'services', title: 'Services', render: services},
  {id: 'webhooks', title: 'Webhooks', render: webhooks},
  {id: 'mailbox', title: 'Mailbox', render: mailbox},
  {id: 'access', title: 'Users & access', render: access,
    need: me => me.admin.users || me.admin.groups || me.admin.tokens || me.admin.own_tokens},
];

const root = document.getElementById('app');
let me = null;
let cleanup = null;

async function boot() {
  try {
    me = await api('GET', '/console/api/session');
  } catch (e) {
    replace(root, h('p', {class: 'boot error'}, 'The console could not reach tern: ' + e.message));
    return;
  }
  if (!me.logged_in && me.open) {
    // Open mode: nothing to log in with; a session still carries the CSRF token.
    try { me = await api('POST', '/console/api/login', {json: {}}); } catch { /* show the login page */ }
  }
  if (!me.logged_in) { loginPage(); return; }
  setSession(me, loggedOut);
  shell();
}

function loggedOut(message) {
  window.onhashchange = null;
  if (cleanup) { cleanup(); cleanup = null; }
  me = null;
  loginPage(message || 'Your session has ended. Please log in again.');
}

function loginPage(message) {
  const status = h('p', {class: 'notice', role: 'status'});
  if (message) notice(status, 'info', message);
  const user = h('input', {name: 'username', id: 'login-user', autocomplete: 'username', required: true});
  const pass = h('input', {name: 'password', id: 'login-password', type: 'password', autocomplete: 'current-password'});
  const token = h('input', {name: 'token', id: 'login-token', type: 'password', autocomplete: 'off', spellcheck: 'false'});
  const submit = async body => {
    notice(status, 'info', 'Logging in…');
    try {
      me = await api('POST', '/console/api/login', {json: body});
      setSession(me, loggedOut);
      shell();
    } catch (e) {
      notice(status, 'error', e instanceof ApiError && e.status === 401 ? 'Wrong user name, password or token.' : e.message);
    }
  };
  const pwForm = h('form', {class: 'stack', id: 'login-form', onsubmit: ev => { ev.preventDefault(); submit({username: user.value, password: pass.value}); }},
    h('label', {class: 'field'}, h('span', {class: 'label'}, 'User name'), user),
    h('label', {class: 'field'}, h('span', {class: 'label'}, 'Password'), pass),
    h('button', {type: 'submit', class: 'primary', id: 'login-submit'}, 'Log in'));
  const tokForm = h('form', {class: 'stack', id: 'token-form', onsubmit: ev => { ev.preventDefault(); submit({token: token.value}); }},
    h('label', {class: 'field'}, h('span', {class: 'label'}, 'Token'), token),
    h('button', {type: 'submit'}, 'Log in with a token'));
  const cert = me && me.certificate
    ? h('div', {class: 'stack'}, h('p', null, 'Your browser presented a client certificate for ', h('strong', null, me.certificate), '.'),
      h('button', {type: 'button', class: 'primary', onclick: () => submit({})}, 'Continue as ' + me.certificate))
    : null;
  replace(root, h('main', {class: 'login'},
    h('div', {class: 'login-box'},
      h('h1', null, h('img', {src: '/console/assets/icon.svg', alt: '', class: 'logo'}), 'tern'),
      h('p', {class: 'muted'}, 'Log in with your tern user name and password, or with a token.'),
      cert, pwForm, h('div', {class: 'or'}, 'or'), tokForm, status)));
  user.focus();
}

function shell() {
  const nav = h('nav', {class: 'side'});
  const main = h('main', {class: 'content', id: 'content'});
  const banner = me.open
    ? h('div', {class: 'banner open-mode', role: 'alert', id: 'open-mode'},
      'Open mode: no users or tokens are configured, so anybody who can reach this port may do everything. ',
      'Create a user with the admin grant under Users & access to turn authentication on.')
    : null;
  const who = h('div', {class: 'who'},
    h('span', {class: 'identity', id: 'whoami'}, me.identity || (me.open ? 'open mode' : 'anonymous')),
    me.method && me.method !== 'none' ? h('span', {class: 'muted'}, ' · ' + me.method) : null,
    // In open mode there is nobody to log out.
    me.method === 'none' && me.open ? null : h('button', {type: 'button', class: 'link', id: 'logout', onclick: logout}, 'Log out'));
  replace(root, h('div', {class: 'frame'},
    h('header', {class: 'top'}, h('a', {href: '#/overview', class: 'brand'},
      h('img', {src: '/console/assets/icon.svg', alt: '', class: 'logo'}), 'tern'), who),
    banner,
    h('div', {class: 'body'}, nav, main)));
  window.onhashchange = () => route(nav, main);
  route(nav, main);
}

async function logout() {
  try { await api('POST', '/console/api/logout'); } catch { /* the session may be gone already */ }
  window.onhashchange = null;
  if (cleanup) { cleanup(); cleanup = null; }
  me = {logged_in: false};
  window.location.hash = '';
  loginPage('You have logged out.');
}

function route(nav, main) {
  const [id, ...args] = (window.location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const visible = pages.filter(p => !p.need || p.need(me));
  const page = visible.find(p => p.id === id) || visible[0];
  replace(nav, visible.map(p => h('a', {href: '#/' + p.id, class: p === page ? 'active' : null, id: 'nav-' + p.id}, p.title)));
  if (cleanup) { cleanup(); cleanup = null; }
  replace(main, h('h1', null, page.title));
  const ctx = {me, args: args.map(decodeURIComponent), main};
  try {
    cleanup = page.render(ctx) || null;
  } catch (e) {
    main.append(h('p', {class: 'notice error'}, e.message));
  }
}

boot();
