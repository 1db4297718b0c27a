// Sessions: search and sort every session (GET /v1/admin/sessions), open one to see its
// subscriptions, queue and deliveries in flight, disconnect its client or purge its queue.
import {h, replace, card, table, field, notice, confirmButton, fmtNum, fmtBytes, fmtTime, badge} from '../dom.js';
import {api, get} from '../api.js';

export default function sessions({main, args}) {
  if (args[0]) return detail(main, args[0]);
  const q = h('input', {type: 'search', id: 'session-search', placeholder: 'client id, identity or face', autocomplete: 'off'});
  const list = h('div', {id: 'session-list'});
  const status = h('p', {class: 'muted small', id: 'session-count'});
  let sort = 'queued', desc = true;
  main.append(card(null, h('div', {class: 'toolbar'}, field('Search', q),
    h('button', {type: 'button', onclick: () => load()}, 'Refresh')), list, status));

  async function load() {
    try {
      const res = await get('/v1/admin/sessions', {q: q.value, sort, order: desc ? 'desc' : 'asc', limit: 500});
      replace(list, table([
        {title: 'Client id', sort: 'client_id', value: r => h('a', {href: '#/sessions/' + encodeURIComponent(r.client_id), class: 'mono'}, r.client_id)},
        {title: 'Identity', sort: 'identity', value: r => r.identity || '–'},
        {title: 'Face', sort: 'face', value: r => r.face || 'internal'},
        {title: 'State', sort: 'online', value: r => r.online ? badge('online', 'ok') : badge('offline')},
        {title: 'Subs', value: r => fmtNum(r.subscriptions), cls: 'num'},
        {title: 'Queued', sort: 'queued', value: r => fmtNum(r.queued), cls: 'num'},
        {title: 'Bytes', value: r => fmtBytes(r.queued_bytes), cls: 'num'},
        {title: 'In flight', sort: 'inflight', value: r => fmtNum(r.inflight), cls: 'num'},
        {title: 'Dropped', value: r => fmtNum(r.dropped), cls: 'num'},
      ], res.sessions, {sorted: sort, desc, empty: 'No sessions match.',
        rowAttrs: r => ({'data-client': r.client_id}),
        onSort: key => { if (key === sort) desc = !desc; else { sort = key; desc = ['queued', 'inflight', 'online'].includes(key); } load(); }}));
      status.textContent = res.total > res.sessions.length ? `Showing ${res.sessions.length} of ${res.total}.` : `${res.total} session${res.total === 1 ? '' : 's'}.`;
    } catch (e) {
      replace(list, h('p', {class: 'notice error'}, e.message));
    }
  }
  let debounce = null;
  q.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(load, 250); });
  load();
  const timer = setInterval(load, 5000);
  return () => { clearInterval(timer); clearTimeout(debounce); };
}

function detail(main, id) {
  const box = h('div', {id: 'session-detail'});
  const status = h('p', {class: 'notice', role: 'status', id: 'session-status'});
  main.append(h('div', {class: 'toolbar center'}, h('a', {href: '#/sessions'}, '← All sessions'),
    h('button', {type: 'button', id: 'session-refresh', onclick: () => load()}, 'Refresh')), status, box);
  const path = '/v1/admin/sessions/' + encodeURIComponent(id);

  async function load() {
    let d;
    try {
      d = await get(path);
    } catch (e) {
      replace(box, h('p', {class: 'notice error'}, e.status === 404 ? 'This session no longer exists.' : e.message));
      return;
    }
    const kick = confirmButton('Disconnect client', 'Click again to disconnect', async () => {
      try {
        await api('POST', path + '/disconnect');
        notice(status, 'ok', 'The client was disconnected.');
      } catch (e) { notice(status, 'error', e.message); }
      load();
    });
    kick.id = 'kick';
    kick.disabled = !d.online;
    const purge = confirmButton('Purge queue', 'Click again to drop ' + d.queued + ' messages', async () => {
      try {
        const r = await api('DELETE', path + '/queue');
        notice(status, 'ok', `Dropped ${r.purged} queued messages.`);
      } catch (e) { notice(status, 'error', e.message); }
      load();
    });
    purge.id = 'purge';
    purge.disabled = d.queued === 0;
    replace(box,
      card(null, h('h2', {class: 'mono'}, d.client_id),
        h('dl', {class: 'facts'},
          h('dt', null, 'State'), h('dd', null, d.online ? badge('online', 'ok') : badge('offline'), d.disconnected ? ' since ' + fmtTime(d.disconnected) : ''),
          h('dt', null, 'Identity'), h('dd', null, d.identity || '–'),
          h('dt', null, 'Face'), h('dd', null, d.face || 'internal'),
          h('dt', null, 'Durable'), h('dd', null, d.durable ? 'yes (queue on disk)' : 'no'),
          h('dt', null, 'Session expiry'), h('dd', null, d.expiry === 4294967295 ? 'never' : d.expiry + ' s'),
          h('dt', null, 'Queue limits'), h('dd', null, limits(d.limits)),
          h('dt', null, 'Dropped / refused'), h('dd', null, fmtNum(d.dropped) + ' / ' + fmtNum(d.refused))),
        h('div', {class: 'actions'}, kick, purge)),
      card('Subscriptions', table([
        {title: 'Filter', value: r => h('span', {class: 'mono'}, r.filter)},
        {title: 'QoS', value: r => r.qos, cls: 'num'},
        {title: 'Options', value: r => [r.no_local ? 'no local' : '', r.retain_as_published ? 'retain as published' : '', r.id ? 'id ' + r.id : ''].filter(Boolean).join(', ') || '–'},
      ], d.subscription_list, {empty: 'No subscriptions.'})),
      card('Queue', h('p', null, `${fmtNum(d.queued)} messages, ${fmtBytes(d.queued_bytes)} waiting.`),
        d.oldest_queued ? h('p', null, 'Oldest: ', h('span', {class: 'mono'}, d.oldest_queued.topic),
          ` (QoS ${d.oldest_queued.qos}, ${fmtBytes(d.oldest_queued.size)}, published ${fmtTime(d.oldest_queued.time)})`) : null),
      card('In flight', table([
        {title: 'Packet id', value: r => r.packet_id, cls: 'num'},
        {title: 'Topic', value: r => h('span', {class: 'mono'}, r.topic)},
        {title: 'QoS', value: r => r.qos, cls: 'num'},
        {title: 'Size', value: r => fmtBytes(r.size), cls: 'num'},
        {title: 'Published', value: r => fmtTime(r.time)},
        {title: 'State', value: r => r.released ? 'released (awaiting PUBCOMP)' : 'sent'},
      ], d.inflight_list, {empty: 'Nothing in flight.'})));
  }
  load();
  return null;
}

function limits(l) {
  const parts = [];
  parts.push(l.max_messages ? fmtNum(l.max_messages) + ' messages' : 'no message limit');
  if (l.max_bytes) parts.push(fmtBytes(l.max_bytes));
  if (l.max_age_seconds) parts.push('max age ' + l.max_age_seconds + ' s');
  parts.push('when full: ' + (l.policy === 'refuse' ? 'refuse new' : 'drop oldest'));
  return parts.join(', ');
}
