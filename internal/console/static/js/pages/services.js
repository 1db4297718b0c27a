// Services: the RPC procedures connected clients serve (GET /v1/services) and a form to call
// one (POST /v1/call/<namespace>/<procedure>), showing the answer as text.
import {h, replace, card, table, field, notice, fmtNum} from '../dom.js';
import {api, get} from '../api.js';

export default function services({main}) {
  const list = h('div', {id: 'service-list'});
  const ns = h('input', {id: 'call-ns', required: true, autocomplete: 'off', class: 'mono'});
  const proc = h('input', {id: 'call-proc', required: true, autocomplete: 'off', class: 'mono'});
  const body = h('textarea', {id: 'call-body', rows: 4, class: 'mono', spellcheck: 'false'}, '{}');
  const timeout = h('input', {id: 'call-timeout', value: '10s'});
  const status = h('p', {class: 'notice', role: 'status'});
  const answer = h('pre', {class: 'answer mono', id: 'call-answer'});
  const load = async () => {
    try {
      const svcs = await get('/v1/services');
      svcs.sort((a, b) => (a.namespace + '/' + a.procedure).localeCompare(b.namespace + '/' + b.procedure));
      replace(list, table([
        {title: 'Namespace', value: r => h('span', {class: 'mono'}, r.namespace)},
        {title: 'Procedure', value: r => h('span', {class: 'mono'}, r.procedure)},
        {title: 'Instances', value: r => fmtNum(r.instances), cls: 'num'},
      ], svcs, {empty: 'No client serves a procedure right now.',
        onRow: r => { ns.value = r.namespace; proc.value = r.procedure; body.focus(); }}));
    } catch (e) {
      replace(list, h('p', {class: 'notice error'}, e.message));
    }
  };
  const form = h('form', {class: 'stack', onsubmit: async ev => {
    ev.preventDefault();
    notice(status, 'info', 'Calling…');
    answer.textContent = '';
    try {
      const res = await api('POST', `/v1/call/${encodeURIComponent(ns.value)}/${encodeURIComponent(proc.value)}`,
        {body: body.value, contentType: 'application/json', query: {timeout: timeout.value}, raw: true});
      const text = await res.text();
      answer.textContent = text;
      notice(status, res.ok ? 'ok' : 'error', res.ok ? 'Answered (HTTP ' + res.status + ').' : 'Failed (HTTP ' + res.status + ').');
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }}, h('div', {class: 'grid3'}, field('Namespace', ns), field('Procedure', proc), field('Timeout', timeout)),
  field('Request (JSON)', body), h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Call')), status, answer);
  main.append(card('Procedures', h('div', {class: 'toolbar'}, h('button', {type: 'button', onclick: load}, 'Refresh')), list),
    card('Call a procedure', form));
  load();
  return null;
}
