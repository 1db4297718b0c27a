// Users & access: users, groups, their grants, and tokens, through the admin API
// (/v1/admin/...). What shows depends on the person's admin grants; the API decides anyway.
import {h, replace, card, table, field, notice, confirmButton, fmtTime} from '../dom.js';
import {api, get} from '../api.js';

const grantText = g => (g.deny ? 'deny:' : '') + g.action + ':' + g.filter;
const lines = v => v.split(/[\n,]/).map(x => x.trim()).filter(Boolean);

export default function access({me, main}) {
  const status = h('p', {class: 'notice', role: 'status', id: 'access-status'});
  main.append(status);
  if (me.admin.users) users(main, status);
  if (me.admin.groups) groups(main, status);
  if (me.admin.tokens || me.admin.own_tokens) tokens(main, status, me);
  return null;
}

function users(main, status) {
  const list = h('div', {id: 'user-list'});
  const name = h('input', {id: 'user-name', required: true, autocomplete: 'off'});
  const pw = h('input', {id: 'user-password', type: 'password', autocomplete: 'new-password'});
  const groupsIn = h('input', {id: 'user-groups', placeholder: 'ops, devices', autocomplete: 'off'});
  const grants = h('textarea', {id: 'user-grants', rows: 3, class: 'mono', placeholder: 'publish:sensors/%u/#\nsubscribe:commands/%u/#', spellcheck: 'false'});
  const load = async () => {
    try {
      const us = await get('/v1/admin/users');
      replace(list, table([
        {title: 'User', value: u => h('strong', null, u.name)},
        {title: 'Groups', value: u => (u.groups || []).join(', ') || '–'},
        {title: 'Grants', value: u => h('span', {class: 'mono'}, (u.grants || []).map(grantText).join('\n') || '–')},
        {title: 'Password', value: u => u.password_scheme || 'none'},
        {title: '', value: u => h('div', {class: 'actions'},
          h('button', {type: 'button', onclick: () => { name.value = u.name; groupsIn.value = (u.groups || []).join(', '); grants.value = (u.grants || []).map(grantText).join('\n'); pw.value = ''; name.focus(); }}, 'Edit'),
          confirmButton('Delete', 'Click again to delete', async () => {
            try { await api('DELETE', '/v1/admin/users/' + encodeURIComponent(u.name)); notice(status, 'ok', 'Deleted user ' + u.name + '.'); } catch (e) { notice(status, 'error', e.message); }
            load();
          }))},
      ], us, {empty: 'No users.'}));
    } catch (e) { replace(list, h('p', {class: 'notice error'}, e.message)); }
  };
  const form = h('form', {class: 'stack', id: 'user-form', onsubmit: async ev => {
    ev.preventDefault();
    const body = {groups: lines(groupsIn.value), grants: lines(grants.value)};
    if (pw.value) body.password = pw.value;
    try {
      await api('PUT', '/v1/admin/users/' + encodeURIComponent(name.value), {json: body});
      notice(status, 'ok', 'Saved user ' + name.value + '.');
      pw.value = '';
      load();
    } catch (e) { notice(status, 'error', e.message); }
  }}, h('div', {class: 'grid2'}, field('Name', name), field('Password', pw, 'leave empty to keep the current one')),
  field('Groups', groupsIn, 'comma-separated'), field('Grants', grants, 'one per line: action:filter or deny:action:filter'),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Save user')));
  main.append(card('Users', list, h('h3', null, 'Create or change a user'), form));
  load();
}

function groups(main, status) {
  const list = h('div', {id: 'group-list'});
  const name = h('input', {id: 'group-name', required: true, autocomplete: 'off'});
  const grants = h('textarea', {id: 'group-grants', rows: 3, class: 'mono', spellcheck: 'false'});
  const load = async () => {
    try {
      const gs = await get('/v1/admin/groups');
      replace(list, table([
        {title: 'Group', value: g => h('strong', null, g.name)},
        {title: 'Grants', value: g => h('span', {class: 'mono'}, (g.grants || []).map(grantText).join('\n') || '–')},
        {title: '', value: g => h('div', {class: 'actions'},
          h('button', {type: 'button', onclick: () => { name.value = g.name; grants.value = (g.grants || []).map(grantText).join('\n'); name.focus(); }}, 'Edit'),
          confirmButton('Delete', 'Click again to delete', async () => {
            try { await api('DELETE', '/v1/admin/groups/' + encodeURIComponent(g.name)); notice(status, 'ok', 'Deleted group ' + g.name + '.'); } catch (e) { notice(status, 'error', e.message); }
            load();
          }))},
      ], gs, {empty: 'No groups.'}));
    } catch (e) { replace(list, h('p', {class: 'notice error'}, e.message)); }
  };
  const form = h('form', {class: 'stack', onsubmit: async ev => {
    ev.preventDefault();
    try {
      await api('PUT', '/v1/admin/groups/' + encodeURIComponent(name.value), {json: {grants: lines(grants.value)}});
      notice(status, 'ok', 'Saved group ' + name.value + '.');
      load();
    } catch (e) { notice(status, 'error', e.message); }
  }}, field('Name', name), field('Grants', grants, 'one per line'),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Save group')));
  main.append(card('Groups', list, h('h3', null, 'Create or change a group'), form));
  load();
}

function tokens(main, status, me) {
  const list = h('div', {id: 'token-list'});
  const user = h('input', {id: 'token-user', required: true, autocomplete: 'off', value: me.admin.tokens ? '' : me.identity});
  if (!me.admin.tokens) user.readOnly = true;
  const grants = h('textarea', {id: 'token-grants', rows: 2, class: 'mono', placeholder: "empty: the user's own grants", spellcheck: 'false'});
  const ttl = h('input', {id: 'token-ttl', placeholder: '24h; empty: never expires', autocomplete: 'off'});
  const secret = h('div', {id: 'token-secret'});
  const load = async () => {
    try {
      const ts = await get('/v1/admin/tokens', me.admin.tokens ? {} : {user: me.identity});
      ts.sort((a, b) => a.created.localeCompare(b.created));
      replace(list, table([
        {title: 'Id', value: t => h('span', {class: 'mono'}, t.id)},
        {title: 'User', value: t => t.user},
        {title: 'Grants', value: t => h('span', {class: 'mono'}, t.grants ? t.grants.map(grantText).join('\n') : "the user's")},
        {title: 'Created', value: t => fmtTime(t.created)},
        {title: 'Expires', value: t => t.expires ? fmtTime(t.expires) : 'never'},
        {title: '', value: t => {
          const b = confirmButton('Revoke', 'Click again to revoke', async () => {
            try { await api('DELETE', '/v1/admin/tokens/' + encodeURIComponent(t.id)); notice(status, 'ok', 'Revoked token ' + t.id + '.'); } catch (e) { notice(status, 'error', e.message); }
            load();
          });
          b.setAttribute('data-token', t.id);
          b.classList.add('revoke');
          return b;
        }},
      ], ts, {empty: 'No tokens.', rowAttrs: t => ({'data-token-row': t.id})}));
    } catch (e) { replace(list, h('p', {class: 'notice error'}, e.message)); }
  };
  const form = h('form', {class: 'stack', id: 'token-form', onsubmit: async ev => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/v1/admin/tokens', {json: {user: user.value, grants: lines(grants.value), ttl: ttl.value}});
      const out = h('input', {readonly: true, value: r.token, class: 'mono secret', id: 'token-value'});
      replace(secret, h('div', {class: 'notice ok'}, 'Token ' + r.info.id + ' created. Copy it now: it is not shown again.', out,
        h('button', {type: 'button', onclick: async () => { out.select(); try { await navigator.clipboard.writeText(out.value); } catch { /* selected for copying by hand */ } }}, 'Copy')));
      load();
    } catch (e) { notice(status, 'error', e.message); }
  }}, h('div', {class: 'grid2'}, field('User', user), field('Lifetime', ttl)), field('Grants', grants, "one per line; within the user's own"),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Create token')), secret);
  main.append(card('Tokens', list, h('h3', null, 'Create a token'), form));
  load();
}
