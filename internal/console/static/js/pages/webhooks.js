// Webhooks: each hook with its state, attempts, failures, dead letters and lag
// (GET /v1/admin/webhooks: your own hooks, or all of them with admin:webhooks), "retry now",
// delete, and a form to create one (POST /v1/webhooks).
import {h, replace, card, table, field, notice, confirmButton, fmtNum, fmtTime, fmtAge, badge} from '../dom.js';
import {api, get} from '../api.js';

export default function webhooks({main}) {
  const list = h('div', {id: 'webhook-list'});
  const status = h('p', {class: 'notice', role: 'status', id: 'webhook-status'});
  const load = async () => {
    let hooks;
    try {
      hooks = await get('/v1/admin/webhooks');
    } catch (e) {
      replace(list, h('p', {class: 'notice error'}, e.message));
      return;
    }
    hooks.sort((a, b) => a.created.localeCompare(b.created));
    replace(list, hooks.length ? hooks.map(hk => hookCard(hk, status, load)) : h('p', {class: 'muted'}, 'No webhooks.'));
  };
  main.append(status, list, createForm(load));
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

const stateBadge = {ok: ['ok', 'ok'], retrying: ['retrying', 'warn'], failing: ['failing', 'bad']};

function hookCard(hk, status, reload) {
  const [label, kind] = stateBadge[hk.state] || [hk.state, ''];
  const retry = h('button', {type: 'button', onclick: async () => {
    try { await api('POST', `/v1/admin/webhooks/${encodeURIComponent(hk.id)}/retry`); notice(status, 'ok', 'Retrying now.'); } catch (e) { notice(status, 'error', e.message); }
    reload();
  }}, 'Retry now');
  retry.classList.add('retry');
  const del = confirmButton('Delete', 'Click again to delete', async () => {
    try { await api('DELETE', `/v1/webhooks/${encodeURIComponent(hk.id)}`); notice(status, 'ok', 'Deleted.'); } catch (e) { notice(status, 'error', e.message); }
    reload();
  });
  return card(null,
    h('div', {class: 'card-head'}, h('h2', {class: 'mono'}, hk.url), badge(label, kind)),
    h('dl', {class: 'facts'},
      h('dt', null, 'Filter'), h('dd', {class: 'mono'}, hk.filter),
      h('dt', null, 'Owner'), h('dd', null, hk.owner || '–'),
      h('dt', null, 'Deliveries'), h('dd', null, `${fmtNum(hk.delivered)} delivered, ${fmtNum(hk.failures)} failed attempts of ${fmtNum(hk.attempts)}`),
      h('dt', null, 'Backlog'), h('dd', null, `${fmtNum(hk.queued)} queued, ${fmtNum(hk.inflight)} being attempted, lag ${fmtAge(hk.lag_seconds)}`),
      h('dt', null, 'Dead letters'), h('dd', null, `${fmtNum(hk.dead_letters)} to `, h('span', {class: 'mono'}, hk.dead_letter_topic)),
      h('dt', null, 'Last error'), h('dd', null, hk.last_error ? [hk.last_error, h('span', {class: 'muted'}, ' at ' + fmtTime(hk.last_error_at))] : '–'),
      h('dt', null, 'Last success'), h('dd', null, fmtTime(hk.last_success_at)),
      h('dt', null, 'Attempts per message'), h('dd', null, String(hk.max_attempts))),
    hk.recent_dead_letters.length ? h('details', null, h('summary', null, `Recent dead letters (${hk.recent_dead_letters.length})`),
      table([
        {title: 'Time', value: r => fmtTime(r.time)},
        {title: 'Topic', value: r => h('span', {class: 'mono'}, r.topic)},
        {title: 'Attempts', value: r => String(r.attempts), cls: 'num'},
        {title: 'Error', value: r => r.error},
      ], hk.recent_dead_letters.slice().reverse()),
      h('p', {class: 'muted small'}, 'The messages themselves were published to the dead-letter topic; tail it on the Topics page.')) : null,
    h('div', {class: 'actions'}, retry, del));
}

function createForm(reload) {
  const filter = h('input', {id: 'hook-filter', required: true, class: 'mono', autocomplete: 'off'});
  const url = h('input', {id: 'hook-url', required: true, type: 'url', placeholder: 'https://example.com/hook', autocomplete: 'off'});
  const secret = h('input', {id: 'hook-secret', type: 'password', autocomplete: 'new-password'});
  const attempts = h('input', {id: 'hook-attempts', type: 'number', min: '1', placeholder: 'server default'});
  const status = h('p', {class: 'notice', role: 'status'});
  return card('Create a webhook', h('form', {class: 'stack', id: 'hook-form', onsubmit: async ev => {
    ev.preventDefault();
    try {
      const hk = await api('POST', '/v1/webhooks', {json: {filter: filter.value, url: url.value, secret: secret.value,
        max_attempts: Number(attempts.value) || 0}});
      notice(status, 'ok', 'Created webhook ' + hk.id + '.');
      secret.value = '';
      reload();
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }}, h('div', {class: 'grid2'}, field('Filter', filter), field('URL', url), field('Signing secret', secret, 'optional; HMAC-SHA256 of each delivery'),
    field('Attempts per message', attempts)), h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Create')), status));
}
