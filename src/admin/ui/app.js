// The operator page of chain-gateway: reads the admin API every few seconds and shows it, and acts
// through it (approve, reject, retry, cancel). Served from the binary under a strict
// Content-Security-Policy. Everything shown that comes from the gateway (node error texts,
// idempotency keys, reasons) is set as text (textContent), never parsed as markup.
'use strict';

(() => {
  const TOKEN_KEY = 'chain-gateway.admin-token';
  const BY_KEY = 'chain-gateway.decided-by';
  const PERIOD_MS = 3000;
  const TIMEOUT_MS = 10000;  // one call to the admin API
  const VIEWS = ['upstreams', 'chains', 'transactions', 'approvals', 'dead-letters', 'streams'];

  // Upstream states in which a node still serves the chain's latest reads.
  const SERVING = new Set(['up', 'breaker_half_open', 'unknown']);

  const state = {
    view: 'upstreams',
    timer: null,
    ticker: null,
    lastOk: 0,          // Date.now() of the last refresh that succeeded
    lastError: null,    // why the last refresh failed, or null
    chainWarnings: [],  // what the gateway's own data says is stale
    search: null,       // the Transactions view's search, kept across refreshes
    decision: null,     // {id, approve} while the decision form is open
    generation: 0,      // refreshes started; an older one's answer is dropped
    inFlight: 0,        // refreshes on their way
  };

  const $ = (id) => document.getElementById(id);

  // ---- Building the page: elements and text only -------------------------------------------

  /** An element with a class and text; children appended as nodes (strings become text). */
  function el(tag, cls, text, children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    for (const c of children || []) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  /** A class name made from a state: letters, digits, '_' and '-' only. */
  function stateClass(s) {
    return 'state state-' + String(s).replace(/[^A-Za-z0-9_-]/g, '');
  }

  function stateCell(s) {
    return el('td', '', null, [el('span', stateClass(s), s)]);
  }

  function text(v) {
    if (v === null || v === undefined || v === '') return '—';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  /** A table of `rows`: columns are [header, (row) => string | Node, class?]. */
  function table(columns, rows, empty) {
    if (!rows.length) return el('p', 'empty', empty);
    const head = el('tr', '', null, columns.map((c) => el('th', '', c[0])));
    const body = rows.map((r) =>
      el('tr', '', null, columns.map((c) => {
        const v = c[1](r);
        if (v instanceof Node && v.nodeName === 'TD') return v;
        const td = el('td', c[2] || '');
        td.append(v instanceof Node ? v : document.createTextNode(text(v)));
        return td;
      })));
    return el('table', '', null, [el('thead', '', null, [head]), el('tbody', '', null, body)]);
  }

  function facts(pairs) {
    const dl = el('dl', 'facts');
    for (const [k, v] of pairs) {
      dl.append(el('dt', '', k));
      const dd = el('dd');
      dd.append(v instanceof Node ? v : document.createTextNode(text(v)));
      dl.append(dd);
    }
    return dl;
  }

  function button(label, cls, onClick) {
    const b = el('button', cls, label);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  /** A transaction id that finds it in the Transactions view. */
  function findLink(id) {
    if (!id) return document.createTextNode('—');
    return button(id, 'link mono', () => {
      $('tx-query').value = id;
      state.search = id;
      show('transactions');
    });
  }

  function setContent(view, ...nodes) {
    $('view-' + view).querySelector('.content').replaceChildren(...nodes);
  }

  function message(id, ok, msg) {
    const m = $(id);
    m.className = 'message ' + (ok ? 'ok' : 'failed');
    m.textContent = msg;
  }

  // ---- The admin API ---------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, method, body) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new Unauthorized('no token');
    const init = { method: method || 'GET', cache: 'no-store', headers: { Authorization: 'Bearer ' + token } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    // A gateway that does not answer fails the refresh (the banner says so) rather than hold it.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    init.signal = abort.signal;
    let res;
    let raw;
    try {
      res = await fetch(path, init);
      raw = await res.text();
    } catch (e) {
      throw new Error(path + ': ' + (abort.signal.aborted ? 'no answer within ' + TIMEOUT_MS / 1000 + ' s' : e.message));
    } finally {
      clearTimeout(timer);
    }
    let data;
    try {
      data = JSON.parse(raw);
    } catch (e) {
      data = { error: raw };
    }
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw new Unauthorized((data && data.error) || 'the token was refused');
    }
    return { status: res.status, ok: res.ok, body: data };
  }

  /** GET that must succeed: its body, or an Error saying what the gateway answered. */
  async function get(path) {
    const r = await api(path);
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status + ': ' + ((r.body && r.body.error) || ''));
    return r.body;
  }

  function errorText(r) {
    return 'HTTP ' + r.status + ': ' + text(r.body && r.body.error ? r.body.error : r.body);
  }

  // ---- Views -----------------------------------------------------------------------------

  async function upstreamsView() {
    const data = await get('/admin/upstreams');
    const heads = data.chains || {};
    const chainFacts = Object.keys(heads).map((name) => [name + ' head', heads[name].head]);
    setContent('upstreams', facts(chainFacts), table([
      ['Chain', (u) => u.chain],
      ['Upstream', (u) => u.id, 'mono'],
      ['Tier', (u) => u.tier],
      ['State', (u) => stateCell(u.state)],
      ['Why', (u) => u.reason],
      ['Score', (u) => (typeof u.score === 'number' ? u.score.toFixed(2) : u.score), 'num'],
      ['Score explained', (u) => u.score_explained, 'explained'],
      ['Head', (u) => u.head, 'num'],
      ['Lag (blocks)', (u) => u.lag_blocks, 'num'],
      ['Latency ms (ewma / p90)', (u) => u.latency_ms ? u.latency_ms.ewma.toFixed(1) + ' / ' + u.latency_ms.p90.toFixed(1) : null, 'num'],
      ['Errors', (u) => (100 * (u.error_rate || 0)).toFixed(0) + ' %', 'num'],
      ['Breaker', (u) => u.breaker],
      ['In flight', (u) => u.in_flight, 'num'],
    ], data.upstreams || [], 'No upstreams.'));
  }

  async function chainsView() {
    const data = await get('/admin/chains');
    const chains = data.chains || [];
    if (!chains.length) {
      setContent('chains', el('p', 'empty', 'No chains are watched.'));
      return;
    }
    const tag = (t) => (t ? t.number + ' (' + t.source + ')' : null);
    const nodes = chains.map((c) => el('div', 'panel chain', null, [
      el('h3', '', c.chain),
      facts([
        ['Head', c.head ? c.head.number + '  ' + c.head.hash : null],
        ['Safe', tag(c.safe)],
        ['Finalized', tag(c.finalized)],
        ['Reorg depth watched', c.depth],
        ['Reorgs seen', c.reorgs],
        ['Cache', c.cache ? c.cache.entries + ' entries, ' + c.cache.bytes + ' bytes' : null],
      ]),
      el('h3', '', 'Recent reorgs'),
      table([
        ['At', (r) => r.at],
        ['Depth', (r) => r.depth, 'num'],
        ['Common ancestor', (r) => r.ancestor, 'num'],
        ['Blocks dropped', (r) => (r.dropped || []).map((b) => b.number).join(', ')],
        ['New head', (r) => (r.newHead ? r.newHead.number + '  ' + r.newHead.hash : null), 'mono'],
      ], c.recentReorgs || [], 'No reorgs seen.'),
    ]));
    setContent('chains', ...nodes);
  }

  const MANAGED_COLUMNS = [
    ['Id', (t) => findLink(t.id)],
    ['State', (t) => stateCell(t.state)],
    ['Chain', (t) => t.chain],
    ['From', (t) => t.from, 'mono'],
    ['To', (t) => (t.request ? t.request.to : null), 'mono'],
    ['Value', (t) => (t.request ? t.request.value : null), 'num'],
    ['Idempotency key', (t) => t.idempotencyKey],
    ['Why', (t) => t.reason],
    ['Attempts', (t) => t.attempts, 'num'],
    ['Hash', (t) => t.hash, 'mono'],
    ['Updated', (t) => t.updatedAt],
  ];

  const SIGNED_COLUMNS = [
    ['Hash', (t) => findLink(t.hash)],
    ['State', (t) => stateCell(t.state)],
    ['Chain', (t) => t.chain],
    ['From', (t) => t.from, 'mono'],
    ['Nonce', (t) => t.nonce, 'num'],
    ['Of', (t) => (t.transaction ? findLink(t.transaction) : null)],
    ['Block', (t) => t.blockNumber, 'num'],
    ['Why', (t) => t.reason],
    ['Updated', (t) => t.updatedAt],
  ];

  function detail(t) {
    const pairs = [];
    for (const k of Object.keys(t)) {
      if (k === 'history' || k === 'signedAttempts') continue;
      pairs.push([k, k === 'state' ? el('span', stateClass(t[k]), t[k]) : t[k]]);
    }
    const nodes = [el('h3', '', 'Found: ' + (t.id || t.hash)), facts(pairs)];
    if (t.signedAttempts) {
      nodes.push(el('h3', '', 'Signed attempts'));
      nodes.push(table(SIGNED_COLUMNS, t.signedAttempts, 'None signed.'));
    }
    if (t.history) {
      nodes.push(el('h3', '', 'History'));
      nodes.push(table([
        ['At', (h) => h.at],
        ['State', (h) => stateCell(h.state)],
        ['Why', (h) => h.reason],
      ], t.history, 'No history.'));
    }
    return el('div', 'panel', null, nodes);
  }

  /** The search: a hash or gtx- id directly, else (or when not found so) an idempotency key. */
  async function searchResult(q) {
    const looksLikeId = /^0x[0-9a-fA-F]{64}$/.test(q) || /^gtx-/i.test(q);
    if (looksLikeId) {
      const r = await api('/admin/transactions/' + encodeURIComponent(q));
      if (r.ok) return detail(r.body);
      if (r.status !== 404) throw new Error(errorText(r));
    }
    const r = await api('/admin/transactions?idempotency_key=' + encodeURIComponent(q));
    if (!r.ok) throw new Error(errorText(r));
    const list = r.body.transactions || [];
    if (!list.length)
      return el('p', 'empty', 'Nothing found for “' + q + '” (a hash, a gtx- id or an idempotency key).');
    return el('div', 'panel', null, [
      el('h3', '', 'Managed transactions with idempotency key “' + q + '”'),
      table(MANAGED_COLUMNS, list, ''),
    ]);
  }

  async function transactionsView() {
    const kind = $('tx-kind').value;
    const st = $('tx-state').value;
    let path = '/admin/transactions?limit=100' + (kind === 'managed' ? '&kind=managed' : '');
    if (st) path += '&state=' + encodeURIComponent(st);
    let found = null;
    if (state.search) {
      try {
        found = await searchResult(state.search);
      } catch (e) {
        if (e instanceof Unauthorized) throw e;
        found = el('p', 'error', 'The search failed: ' + e.message);
      }
    }
    const data = await get(path);
    $('tx-found').replaceChildren(...(found ? [found] : []));
    const title = (kind === 'managed' ? 'Managed transactions' : 'Signed transactions') +
      (st ? ' in ' + st : '') + ', the newest first';
    setContent('transactions', el('h3', '', title),
      table(kind === 'managed' ? MANAGED_COLUMNS : SIGNED_COLUMNS, data.transactions || [],
        'None.'));
  }

  async function approvalsView() {
    const data = await get('/admin/approvals');
    setContent('approvals', table([
      ['Id', (a) => findLink(a.id)],
      ['Chain', (a) => a.chain],
      ['From', (a) => a.from, 'mono'],
      ['Held by', (a) => a.heldBy],
      ['Why', (a) => a.reason],
      ['To', (a) => (a.request ? a.request.to : null), 'mono'],
      ['Value', (a) => (a.request ? a.request.value : null), 'num'],
      ['Idempotency key', (a) => a.idempotencyKey],
      ['Held since', (a) => a.heldSince],
      ['Expires', (a) => a.expiresAt],
      // A signer's own hold is decided at the signer: here it can only be cancelled.
      ['', (a) => el('td', '', null, a.heldBy === 'signer'
        ? [button('Cancel', 'act cancel', () => act(a.id, 'cancel', 'approvals-message'))]
        : [button('Approve', 'act approve', () => openDecision(a.id, true)),
          button('Reject', 'act reject', () => openDecision(a.id, false))])],
    ], data.approvals || [], 'Nothing is held for approval.'));
  }

  function openDecision(id, approve) {
    state.decision = { id, approve };
    $('decision-title').textContent = (approve ? 'Approve ' : 'Reject ') + id;
    $('decision-submit').textContent = approve ? 'Approve' : 'Reject';
    $('decision-by').value = sessionStorage.getItem(BY_KEY) || '';
    $('decision-reason').value = '';
    $('decision').classList.remove('hidden');
    $('decision-by').focus();
  }

  function closeDecision() {
    state.decision = null;
    $('decision').classList.add('hidden');
  }

  async function decide(event) {
    event.preventDefault();
    const d = state.decision;
    if (!d) return;
    const by = $('decision-by').value.trim();
    const reason = $('decision-reason').value.trim();
    const body = { by };
    if (reason) body.reason = reason;
    sessionStorage.setItem(BY_KEY, by);
    try {
      const path = '/admin/approvals/' + encodeURIComponent(d.id) + '/' + (d.approve ? 'approve' : 'reject');
      const r = await api(path, 'POST', body);
      if (r.ok) {
        closeDecision();
        message('approvals-message', true,
          d.id + (d.approve ? ' approved' : ' rejected') + ' by ' + by + ': now ' + text(r.body.state));
      } else {
        message('approvals-message', false, d.id + ': ' + errorText(r));
      }
    } catch (e) {
      failed(e);
    }
    refresh();
  }

  async function act(id, action, where) {
    try {
      const r = await api('/admin/transactions/' + encodeURIComponent(id) + '/' + action, 'POST');
      message(where || 'dead-letters-message', r.ok, id + ' ' + action + ': ' +
        (r.ok ? 'now ' + text(r.body.state || r.body) : errorText(r)));
    } catch (e) {
      failed(e);
    }
    refresh();
  }

  async function deadLettersView() {
    const managed = await get('/admin/transactions?kind=managed&state=DEAD_LETTER&limit=200');
    const signed = await get('/admin/transactions?state=DEAD_LETTER&limit=200');
    const raw = (signed.transactions || []).filter((t) => !t.transaction);
    setContent('dead-letters',
      el('h3', '', 'Managed'),
      table(MANAGED_COLUMNS.concat([['', (t) => el('td', '', null, [
        button('Retry', 'act retry', () => act(t.id, 'retry')),
        button('Cancel', 'act cancel', () => act(t.id, 'cancel')),
      ])]]), managed.transactions || [], 'No managed dead letters.'),
      el('h3', '', 'Raw (sent signed by clients)'),
      table(SIGNED_COLUMNS, raw, 'No raw dead letters.'));
  }

  async function streamsView() {
    const data = await get('/admin/streams');
    setContent('streams', table([
      ['Stream', (s) => s.id, 'mono'],
      ['Chain', (s) => s.chain],
      ['Kind', (s) => s.kind],
      ['Source', (s) => s.source],
      ['State', (s) => stateCell(s.state)],
      ['Why', (s) => s.reason],
      ['Next block', (s) => s.nextBlock, 'num'],
      ['Head', (s) => s.head, 'num'],
      ['Lag (blocks)', (s) => s.lagBlocks, 'num'],
      ['Confirmations', (s) => s.confirmations, 'num'],
      ['Failures', (s) => s.failures, 'num'],
      ['Events delivered', (s) => s.deliveredEvents, 'num'],
      ['Reorgs undone', (s) => s.reorgsUndone, 'num'],
      ['Last delivery', (s) => s.lastDeliveryAt],
    ], data.streams || [], 'No event streams.'));
  }

  const RENDER = {
    upstreams: upstreamsView,
    chains: chainsView,
    transactions: transactionsView,
    approvals: approvalsView,
    'dead-letters': deadLettersView,
    streams: streamsView,
  };

  // ---- Staleness: the banner ---------------------------------------------------------------

  /** What the upstreams say about each chain: a chain none of whose nodes serves is stale. */
  async function checkChains() {
    const data = await get('/admin/upstreams');
    const byChain = {};
    for (const u of data.upstreams || []) {
      byChain[u.chain] = byChain[u.chain] || [];
      byChain[u.chain].push(u);
    }
    state.chainWarnings = Object.keys(byChain)
      .filter((c) => !byChain[c].some((u) => SERVING.has(u.state)))
      .map((c) => 'chain ' + c + ': no upstream serves it (' +
        byChain[c].map((u) => u.id + ' ' + u.state).join(', ') + '); its head may be stale');
  }

  function updateBanner() {
    const parts = [];
    const age = state.lastOk ? Math.round((Date.now() - state.lastOk) / 1000) : null;
    if (state.lastError) {
      parts.push('Stale: the last refresh failed (' + state.lastError + ')' +
        (age !== null ? '; what is shown is ' + age + ' s old' : '') + '.');
    } else if (state.lastOk && Date.now() - state.lastOk > 2 * PERIOD_MS) {
      parts.push('Stale: what is shown is ' + age + ' s old.');
    }
    parts.push(...state.chainWarnings);
    const banner = $('banner');
    banner.textContent = parts.join(' ');
    banner.classList.toggle('hidden', parts.length === 0);
    if (state.lastOk)
      $('refreshed').textContent = 'refreshed ' + new Date(state.lastOk).toLocaleTimeString() +
        ' (every ' + PERIOD_MS / 1000 + ' s)';
  }

  function failed(e) {
    if (e instanceof Unauthorized) {
      showLogin(e.message === 'no token' ? '' : 'The admin token was refused (' + e.message + '): enter it again.');
      return;
    }
    state.lastError = e && e.message ? e.message : String(e);
    updateBanner();
  }

  // ---- Refreshing and navigation -----------------------------------------------------------

  // The periodic refresh: none while one is still on its way (a slow API is not asked more).
  function tick() {
    if (state.inFlight === 0) refresh();
  }

  async function refresh() {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    const generation = ++state.generation;
    const view = state.view;
    ++state.inFlight;
    try {
      await RENDER[view]();
      await checkChains();
      if (generation !== state.generation) return;
      state.lastOk = Date.now();
      state.lastError = null;
      document.body.dataset.refreshed = String(generation);
      updateBanner();
    } catch (e) {
      if (generation === state.generation) failed(e);
    } finally {
      --state.inFlight;
    }
  }

  function schedule() {
    clearInterval(state.timer);
    clearInterval(state.ticker);
    state.timer = setInterval(tick, PERIOD_MS);
    state.ticker = setInterval(updateBanner, 1000);
  }

  function show(view) {
    if (!VIEWS.includes(view)) view = 'upstreams';
    state.view = view;
    for (const v of VIEWS) $('view-' + v).classList.toggle('hidden', v !== view);
    for (const b of $('tabs').querySelectorAll('button'))
      b.classList.toggle('active', b.dataset.view === view);
    if (location.hash !== '#' + view) history.replaceState(null, '', '#' + view);
    document.title = 'chain-gateway operator: ' + $('view-' + view).dataset.title;
    refresh();
  }

  function showLogin(msg) {
    clearInterval(state.timer);
    clearInterval(state.ticker);
    $('login-message').textContent = msg || '';
    $('login').classList.remove('hidden');
    $('tabs').classList.add('hidden');
    $('forget').classList.add('hidden');
    $('banner').classList.add('hidden');
    for (const v of VIEWS) $('view-' + v).classList.add('hidden');
    $('token').focus();
  }

  function start() {
    $('login').classList.add('hidden');
    $('tabs').classList.remove('hidden');
    $('forget').classList.remove('hidden');
    schedule();
    show(location.hash.slice(1));
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token').value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      start();
    });
    $('forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('');
    });
    for (const b of $('tabs').querySelectorAll('button'))
      b.addEventListener('click', () => show(b.dataset.view));
    $('tx-filter').addEventListener('change', () => refresh());
    $('tx-filter').addEventListener('submit', (event) => event.preventDefault());
    $('tx-search').addEventListener('submit', (event) => {
      event.preventDefault();
      state.search = $('tx-query').value.trim() || null;
      refresh();
    });
    $('tx-clear').addEventListener('click', () => {
      $('tx-query').value = '';
      state.search = null;
      $('tx-found').replaceChildren();
      refresh();
    });
    $('decision').addEventListener('submit', decide);
    $('decision-cancel').addEventListener('click', closeDecision);
    window.addEventListener('hashchange', () => show(location.hash.slice(1)));
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else showLogin('');
  });
})();
