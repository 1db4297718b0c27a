// Topics: the retained messages as a tree (GET /v1/retained/#), a live tail of any filter over
// Server-Sent Events (GET /v1/sub/<filter>), and a publish form (POST /v1/pub/<topic>) with QoS,
// retain and MQTT 5 properties. Topics and payloads are shown as text, whatever they contain.
import {h, replace, card, field, notice, payloadText, fmtTime, badge} from '../dom.js';
import {api, get, topicPath} from '../api.js';

const MAX_TAIL = 200;     // rows kept in the live tail
const MAX_RETAINED = 1000; // retained messages drawn in the tree

export default function topics({main}) {
  const stop = tail(main);
  publishForm(main);
  retainedTree(main);
  return stop;
}

function tail(main) {
  const filter = h('input', {id: 'tail-filter', value: '#', autocomplete: 'off', spellcheck: 'false', class: 'mono'});
  const btn = h('button', {type: 'submit', class: 'primary', id: 'tail-start'}, 'Start');
  const clearBtn = h('button', {type: 'button', id: 'tail-clear'}, 'Clear');
  const status = h('span', {class: 'muted small', id: 'tail-status'}, 'Not tailing.');
  const rows = h('tbody', {id: 'tail-rows'});
  const tbl = h('table', {class: 'grid tail'}, h('thead', null, h('tr', null,
    h('th', null, 'Time'), h('th', null, 'Topic'), h('th', null, 'QoS'), h('th', null, 'Payload'))), rows);
  let es = null;
  const stopTail = () => {
    if (es) { es.close(); es = null; }
    btn.textContent = 'Start';
    status.textContent = 'Not tailing.';
  };
  const form = h('form', {class: 'toolbar', onsubmit: ev => {
    ev.preventDefault();
    if (es) { stopTail(); return; }
    const f = filter.value.trim();
    if (!f) return;
    es = new EventSource('/v1/sub/' + topicPath(f));
    btn.textContent = 'Stop';
    status.textContent = 'Connecting…';
    es.addEventListener('open', () => { status.textContent = 'Tailing ' + f; });
    es.addEventListener('message', ev => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      rows.prepend(h('tr', {class: 'tail-row'},
        h('td', {class: 'nowrap'}, fmtTime(m.time)),
        h('td', {class: 'mono topic'}, m.topic, m.retain ? [' ', badge('retained')] : null),
        h('td', {class: 'num'}, String(m.qos)),
        h('td', {class: 'mono payload'}, payloadText(m))));
      while (rows.children.length > MAX_TAIL) rows.lastChild.remove();
    });
    es.addEventListener('error', () => {
      // EventSource reconnects by itself; a refusal (401, 403) closes it for good.
      if (es && es.readyState === EventSource.CLOSED) {
        status.textContent = 'The server refused the subscription (check the filter and your subscribe grants).';
        btn.textContent = 'Start';
        es = null;
      } else {
        status.textContent = 'Reconnecting…';
      }
    });
  }}, field('Filter', filter), btn, clearBtn, status);
  clearBtn.addEventListener('click', () => replace(rows));
  main.append(card('Live tail', form, h('div', {class: 'scroll'}, tbl)));
  return stopTail;
}

function publishForm(main) {
  const topic = h('input', {id: 'pub-topic', required: true, autocomplete: 'off', spellcheck: 'false', class: 'mono'});
  const payload = h('textarea', {id: 'pub-payload', rows: 4, class: 'mono', spellcheck: 'false'});
  const qos = h('select', {id: 'pub-qos'}, h('option', {value: '0'}, '0 – at most once'),
    h('option', {value: '1'}, '1 – at least once'), h('option', {value: '2'}, '2 – exactly once'));
  const retain = h('input', {type: 'checkbox', id: 'pub-retain'});
  const ctype = h('input', {id: 'pub-content-type', placeholder: 'text/plain', autocomplete: 'off'});
  const rtopic = h('input', {id: 'pub-response-topic', autocomplete: 'off', class: 'mono'});
  const corr = h('input', {id: 'pub-correlation', autocomplete: 'off'});
  const expiry = h('input', {id: 'pub-expiry', type: 'number', min: '1', placeholder: 'seconds'});
  const props = h('textarea', {id: 'pub-props', rows: 2, class: 'mono', placeholder: 'key=value, one per line', spellcheck: 'false'});
  const status = h('p', {class: 'notice', role: 'status', id: 'pub-status'});
  const form = h('form', {class: 'stack', id: 'pub-form', onsubmit: async ev => {
    ev.preventDefault();
    const query = {qos: qos.value, retain: retain.checked ? 'true' : '', content_type: ctype.value,
      response_topic: rtopic.value, correlation_data: corr.value, expiry: expiry.value,
      prop: props.value.split('\n').map(l => l.trim()).filter(Boolean)};
    try {
      const r = await api('POST', '/v1/pub/' + topicPath(topic.value), {body: payload.value, query,
        contentType: ctype.value || 'text/plain; charset=utf-8'});
      notice(status, 'ok', `Published to ${r.topic}: ${r.matched} subscriber${r.matched === 1 ? '' : 's'} matched.`);
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }},
  h('div', {class: 'grid2'}, field('Topic', topic), field('QoS', qos)),
  field('Payload', payload),
  h('label', {class: 'check'}, retain, ' Retain'),
  h('details', null, h('summary', null, 'MQTT 5 properties'),
    h('div', {class: 'grid2'}, field('Content type', ctype), field('Message expiry', expiry),
      field('Response topic', rtopic), field('Correlation data', corr)),
    field('User properties', props)),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'pub-submit'}, 'Publish')), status);
  main.append(card('Publish', form));
}

function retainedTree(main) {
  const box = h('div', {id: 'retained-tree'});
  const filter = h('input', {id: 'retained-filter', value: '#', class: 'mono', autocomplete: 'off', spellcheck: 'false'});
  const load = async () => {
    let msgs;
    try {
      msgs = await get('/v1/retained/' + topicPath(filter.value.trim() || '#'));
    } catch (e) {
      replace(box, h('p', {class: 'notice error'}, e.message));
      return;
    }
    const shown = msgs.slice(0, MAX_RETAINED);
    const rootNode = {kids: new Map()};
    for (const m of shown) {
      let n = rootNode;
      for (const level of m.topic.split('/')) {
        if (!n.kids.has(level)) n.kids.set(level, {kids: new Map()});
        n = n.kids.get(level);
      }
      n.msg = m;
    }
    replace(box, shown.length ? h('ul', {class: 'tree'}, nodes(rootNode)) : h('p', {class: 'muted'}, 'No retained messages match.'),
      msgs.length > shown.length ? h('p', {class: 'muted'}, `Showing ${shown.length} of ${msgs.length}; narrow the filter.`) : null);
  };
  main.append(card('Retained messages', h('form', {class: 'toolbar', onsubmit: ev => { ev.preventDefault(); load(); }},
    field('Filter', filter), h('button', {type: 'submit', id: 'retained-load'}, 'Load')), box));
  load();
}

function nodes(n) {
  return [...n.kids.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([level, k]) => {
    const label = h('span', {class: 'mono level'}, level === '' ? '(empty)' : level);
    const msg = k.msg ? h('div', {class: 'retained-msg'},
      h('span', {class: 'mono payload'}, payloadText(k.msg)),
      h('span', {class: 'muted small'}, ` QoS ${k.msg.qos} · ${fmtTime(k.msg.time)}${k.msg.sender ? ' · from ' + k.msg.sender : ''}`)) : null;
    if (k.kids.size === 0) return h('li', {class: 'leaf'}, label, msg);
    return h('li', null, h('details', {open: true}, h('summary', null, label), msg, h('ul', null, nodes(k))));
  });
}
