// Mailbox: your own mailbox (GET /v1/mbox: the oldest message; reply, remove), sending to a
// mailbox (POST /v1/mbox/<name>), and waiting for the reply to what you sent.
import {h, replace, card, field, notice, confirmButton, fmtTime, badge} from '../dom.js';
import {api, get} from '../api.js';

function bodyText(b64) {
  try {
    const bytes = Uint8Array.from(atob(b64 || ''), c => c.charCodeAt(0));
    return new TextDecoder('utf-8', {fatal: true}).decode(bytes);
  } catch {
    return '(binary, base64) ' + b64;
  }
}

export default function mailbox({me, main}) {
  const box = h('div', {id: 'mbox-front'});
  const status = h('p', {class: 'notice', role: 'status', id: 'mbox-status'});
  const load = async () => {
    let m;
    try {
      m = await get('/v1/mbox');
    } catch (e) {
      if (e.status === 404 && (e.code === 'not_found' || e.code === 'no_mailbox')) {
        replace(box, h('p', {class: 'muted'}, 'Your mailbox is empty.'));
      } else if (e.status === 406) {
        replace(box, h('p', {class: 'muted'}, 'A mailbox needs an identity of lower-case letters and digits; this session has none (' + (me.identity || 'open mode') + ').'));
      } else {
        replace(box, h('p', {class: 'notice error'}, e.message));
      }
      return;
    }
    const reply = h('textarea', {rows: 3, class: 'mono', id: 'mbox-reply'});
    replace(box, h('dl', {class: 'facts'},
      h('dt', null, 'Message'), h('dd', {class: 'mono'}, m.id),
      h('dt', null, 'From'), h('dd', null, m.from || '–'),
      h('dt', null, 'Received'), h('dd', null, fmtTime(m.created)),
      h('dt', null, 'Expires'), h('dd', null, fmtTime(m.expires)),
      h('dt', null, 'Reply'), h('dd', null, m.wants_reply ? (m.answered ? badge('answered', 'ok') : badge('wanted', 'warn')) : 'not wanted')),
    h('pre', {class: 'answer mono', id: 'mbox-body'}, bodyText(m.body)),
    m.wants_reply && !m.answered ? h('form', {class: 'stack', onsubmit: async ev => {
      ev.preventDefault();
      try { await api('POST', `/v1/mbox/messages/${m.id}/reply`, {body: reply.value, contentType: 'text/plain'}); notice(status, 'ok', 'Replied.'); load(); } catch (e) { notice(status, 'error', e.message); }
    }}, field('Your reply', reply), h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Reply'))) : null,
    h('div', {class: 'actions'}, confirmButton('Remove', 'Click again to remove', async () => {
      try { await api('DELETE', `/v1/mbox/messages/${m.id}`); notice(status, 'ok', 'Removed.'); } catch (e) { notice(status, 'error', e.message); }
      load();
    })));
  };
  main.append(card('Your mailbox' + (me.identity ? ' (' + me.identity + ')' : ''),
    h('div', {class: 'toolbar'}, h('button', {type: 'button', onclick: load}, 'Refresh')), status, box), sendForm());
  load();
  return null;
}

function sendForm() {
  const dst = h('input', {id: 'mbox-dst', required: true, autocomplete: 'off', pattern: '[a-z0-9]+'});
  const body = h('textarea', {id: 'mbox-send-body', rows: 3, class: 'mono'});
  const wants = h('input', {type: 'checkbox', id: 'mbox-wants-reply'});
  const status = h('p', {class: 'notice', role: 'status'});
  const replyBox = h('pre', {class: 'answer mono'});
  return card('Send to a mailbox', h('form', {class: 'stack', onsubmit: async ev => {
    ev.preventDefault();
    replyBox.textContent = '';
    try {
      const r = await api('POST', '/v1/mbox/' + encodeURIComponent(dst.value), {body: body.value, contentType: 'text/plain',
        query: {reply: wants.checked ? '1' : ''}});
      notice(status, 'ok', 'Sent as message ' + r.id + '.');
      if (wants.checked) {
        notice(status, 'info', 'Sent as message ' + r.id + '; waiting for the reply…');
        const ans = await get(`/v1/mbox/${encodeURIComponent(dst.value)}/replies/${r.id}`, {wait: '25s'});
        replyBox.textContent = bodyText(ans.reply);
        notice(status, 'ok', 'Message ' + r.id + ' was answered.');
      }
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }}, h('div', {class: 'grid2'}, field('Mailbox', dst), h('label', {class: 'check'}, wants, ' Wants a reply')),
  field('Message', body), h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Send')), status, replyBox));
}
