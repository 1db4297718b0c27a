// Overview: live figures from GET /v1/stats (polled), connected clients by face, messages in
// and out per second as a chart, drops and refusals by cause, the store, and uplinks and cluster
// nodes when /v1/stats reports them.
import {h, replace, card, table, fmtBytes, fmtNum, badge} from '../dom.js';
import {api, get} from '../api.js';
import {lineChart} from '../chart.js';

const EVERY = 2000;     // ms between polls
const POINTS = 90;      // three minutes of rates

export default function overview({me, main}) {
  if (!me.admin.stats) {
    main.append(card('Live figures', h('p', {class: 'muted'},
      'The live figures need the grant admin:stats. Topics, services, webhooks and your mailbox are in the menu.')));
    health(main);
    return null;
  }
  const tiles = h('div', {class: 'tiles', id: 'tiles'});
  const chart = h('div', {class: 'chart-box', id: 'rate-chart'});
  const legend = h('div', {class: 'legend'}, h('span', {class: 'key in'}, 'in (received/s)'), h('span', {class: 'key out'}, 'out (delivered/s)'));
  const faces = h('div', {id: 'faces'});
  const drops = h('div', {id: 'drops'});
  const store = h('div', {id: 'store'});
  const links = h('div', {id: 'links'});
  const status = h('p', {class: 'muted small', id: 'overview-status'});
  main.append(tiles,
    card('Messages per second', chart, legend),
    h('div', {class: 'columns'}, card('Connected clients by face', faces), card('Store and health', store)),
    card('Drops and refusals', drops),
    card('Uplinks and cluster', links),
    status);

  const rin = [], rout = [];
  let last = null;
  let stopped = false;

  async function tick() {
    let st, fc, ready;
    try {
      [st, fc, ready] = await Promise.all([
        get('/v1/stats', {sessions: 0}),
        me.admin.sessions ? get('/v1/admin/faces') : Promise.resolve(null),
        readiness(),
      ]);
    } catch (e) {
      status.textContent = 'Could not read the figures: ' + e.message;
      return;
    }
    if (stopped) return;
    const now = performance.now();
    if (last) {
      const dt = (now - last.t) / 1000;
      push(rin, Math.max(0, (st.received - last.received) / dt));
      push(rout, Math.max(0, (st.delivered - last.delivered) / dt));
    }
    last = {t: now, received: st.received, delivered: st.delivered};
    replace(tiles,
      tile('Connected', st.connected), tile('Sessions', st.sessions), tile('Subscriptions', st.subscriptions),
      tile('Queued', st.queued), tile('Retained', st.retained),
      tile('In / s', rin.length ? rin[rin.length - 1].toFixed(1) : '–'),
      tile('Out / s', rout.length ? rout[rout.length - 1].toFixed(1) : '–'));
    replace(chart, lineChart([{cls: 'in', points: rin}, {cls: 'out', points: rout}],
      {capacity: POINTS, width: Math.max(320, chart.clientWidth || 900), height: 200, label: 'messages per second', leftLabel: `${POINTS * EVERY / 1000} s ago`}));
    replace(faces, fc
      ? table([{title: 'Face', value: r => r[0]}, {title: 'Connected', value: r => fmtNum(r[1]), cls: 'num'}],
        Object.entries(fc).map(([k, v]) => [k || 'internal', v]).sort((a, b) => a[0].localeCompare(b[0])),
        {empty: 'No clients connected.'})
      : h('p', {class: 'muted'}, 'Counts by face need admin:sessions.'));
    const a = st.access || {};
    replace(drops, table([{title: 'Cause', value: r => r[0]}, {title: 'Count', value: r => fmtNum(r[1]), cls: 'num'}], [
      ['Dropped: session queue full (oldest dropped)', st.dropped_queue_full],
      ['Dropped: slow consumer (QoS 0)', st.dropped_slow],
      ['Dropped: offline session (QoS 0)', st.dropped_offline],
      ['Expired before delivery', st.expired],
      ['Refused: session queue full', st.refused_queue_full],
      ['Refused: authentication', a.auth_refused],
      ['Refused: not authorized by grants', a.not_authorized],
      ['Refused: connection limits', a.refused_connections],
      ['Refused: client id of another identity', a.refused_client_id],
      ['Refused: publish rate', a.refused_rate],
      ['Refused: payload too large', a.refused_payload],
      ['Throttled publishes', a.throttled],
      ['Store errors', st.store_errors],
    ]));
    const s = st.store || {};
    replace(store, h('dl', {class: 'facts'},
      h('dt', null, 'Health'), h('dd', null, ready.ok ? badge('ready', 'ok') : badge('unavailable: ' + ready.reason, 'bad')),
      h('dt', null, 'Size on disk'), h('dd', null, s.data_dir ? fmtBytes(s.disk_bytes) : 'in memory only'),
      h('dt', null, 'Data directory'), h('dd', null, s.data_dir || '(none)'),
      h('dt', null, 'Sync'), h('dd', null, s.sync || '–'),
      h('dt', null, 'Authentication'), h('dd', null, a.open ? badge('open mode', 'warn') : 'on'),
      h('dt', null, 'Logins accepted'), h('dd', null, fmtNum(a.auth_accepted))));
    replace(links, linksView(st));
    status.textContent = 'Updated ' + new Date().toLocaleTimeString('en-GB', {hour12: false});
  }

  tick();
  const timer = setInterval(tick, EVERY);
  return () => { stopped = true; clearInterval(timer); };
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > POINTS) arr.shift();
}

function tile(label, value) {
  return h('div', {class: 'tile'}, h('div', {class: 'tile-value'}, typeof value === 'number' ? fmtNum(value) : value),
    h('div', {class: 'tile-label'}, label));
}

async function readiness() {
  const res = await api('GET', '/readyz', {raw: true});
  if (res.ok) return {ok: true};
  let reason = res.statusText;
  try { reason = (await res.json()).reason || reason; } catch { /* keep the status text */ }
  return {ok: false, reason};
}

async function health(main) {
  const r = await readiness().catch(e => ({ok: false, reason: e.message}));
  main.append(card('Health', r.ok ? badge('ready', 'ok') : badge('unavailable: ' + r.reason, 'bad')));
}

// linksView shows what /v1/stats says of uplinks and cluster nodes, whatever their fields.
function linksView(st) {
  const out = [];
  for (const [key, title, none] of [['uplinks', 'Uplinks', 'No uplinks are configured.'],
    ['cluster', 'Cluster nodes', 'This router is not part of a cluster.']]) {
    let v = st[key];
    if (v && !Array.isArray(v) && Array.isArray(v.nodes)) v = v.nodes;
    if (Array.isArray(v) && v.length) {
      const cols = [...new Set(v.flatMap(o => Object.keys(o)))];
      out.push(h('h3', null, title), table(cols.map(c => ({title: c, value: r => show(r[c])})), v));
    } else {
      out.push(h('p', {class: 'muted'}, none));
    }
  }
  return out;
}

function show(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
