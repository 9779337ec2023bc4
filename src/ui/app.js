// syncconfig web console. Plain ES2020, no dependencies, no build step, no inline code (CSP).
// It uses only the public HTTP API, the same one programs use. Its ids, classes and data
// attributes are a contract with the browser test (tests/ui/console_e2e_test.py):
// rename nothing without changing that test.
'use strict';

(() => {
  // ---- Theme ----------------------------------------------------------------------------------
  // This script loads in <head>, not deferred, so the theme is set before the first paint.
  const THEME_KEY = 'syncconfig.theme';
  const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

  function storedTheme() {
    try {
      const t = localStorage.getItem(THEME_KEY);
      return t === 'light' || t === 'dark' ? t : null;
    } catch { return null; } // storage disabled: the system preference still works
  }
  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    const btn = document.getElementById('theme-toggle');
    if (!btn) return;
    btn.textContent = theme === 'dark' ? 'Light theme' : 'Dark theme';
    btn.setAttribute('aria-label', `Switch to the ${theme === 'dark' ? 'light' : 'dark'} theme`);
  }
  applyTheme(storedTheme() || (darkQuery.matches ? 'dark' : 'light'));

  // ---- Helpers --------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const pretty = (v) => JSON.stringify(v, null, 2);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const PAGE = 500;         // rows per tree level before "Show N more"
  const SEARCH_CAP = 200;   // search results rendered
  const HISTORY_PAGE = 50;
  const CHANGED_MS = 60000; // how long a change by someone else stays highlighted

  // h('button', {class: 'x', text: 'Hi', onclick: fn, dataset: {...}}, ...children)
  function h(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  // Local "YYYY-MM-DD HH:MM:SS"; the exact ISO time goes into the datetime/title attributes.
  function fmtTime(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return iso || '';
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
      `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  function ago(iso) {
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (!Number.isFinite(s)) return '';
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return s < 86400 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} days ago`;
  }
  const timeEl = (iso, cls) =>
    h('time', { class: cls, datetime: iso, title: iso ? `${iso} (${ago(iso)})` : null, text: fmtTime(iso) });

  const isSep = (c) => c === 58 /* : */ || c === 47 /* / */;
  function sepIndex(k, from) {
    for (let i = from; i < k.length; i++) if (isSep(k.charCodeAt(i))) return i;
    return -1;
  }
  // The folders a key is in: "a:b/c" -> ["a:", "a:b/"]; "a:" -> ["a:"] (a key with an empty name).
  function ancestors(key) {
    const out = [];
    for (let i = 0; i < key.length; i++) if (isSep(key.charCodeAt(i))) out.push(key.slice(0, i + 1));
    return out;
  }
  function sessionGet(k) {
    try { return sessionStorage.getItem(k); } catch { return null; }
  }
  function sessionSet(k, v) {
    try {
      if (v === null) sessionStorage.removeItem(k);
      else sessionStorage.setItem(k, v);
    } catch { /* private mode: kept for this page only */ }
  }

  // ---- State: everything the page remembers, in one place ------------------------------------
  const S = {
    token: sessionGet('syncconfig.token') || '',
    store: '',            // '' = the first store (bare routes); else routes go under /stores/NAME
    stores: [],
    auth: false,
    name: null,
    rules: [{ prefix: '', access: 'admin' }],
    gen: 0,               // bumped by every (re)start: async work of an older start stops quietly
    watchCtrl: null,
    baseRevision: 0,      // X-Syncconfig-Revision of the GET /settings the tree was built from
    baseResumeId: '',     // its X-Syncconfig-Resume-Id (an anchored event id), when it had one
    lastEventId: '',
    conn: 'connecting',
    loaded: false,        // the first /settings has arrived
    ownRevisions: new Set(), // revisions this page's writes produced: not "changed by others"
    inflight: 0,          // writes awaiting their response: /watch events wait to be classified
    deferred: [],
    changed: new Map(),   // key -> time its highlight ends
    changedFolders: new Map(), // folder prefix -> latest highlight end of a key under it
    expanded: new Set(),
    levelLimit: new Map(), // folder prefix -> rows shown at that level
    search: '',
    selectedKey: null,
    view: null,           // the key view (see openKey)
    viewSeq: 0,           // guards key-view loads against out-of-order responses
    drafts: new Map(),    // key -> unsaved edit, kept while the user looks at something else
    folderPrefix: '',
  };

  // ---- HTTP: every call goes through api(), so the token and 401 handling live in one place ---
  class AuthNeeded extends Error {}
  const storeBase = () => (S.store ? `/stores/${enc(S.store)}` : '');
  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    if (S.token) headers.Authorization = `Bearer ${S.token}`;
    return headers;
  }
  // Resolves to {status, ok, data, headers}; throws AuthNeeded on 401, TypeError on network errors.
  async function api(method, path, opts = {}) {
    const headers = authHeaders(opts.headers);
    let body;
    if (opts.body !== undefined) {
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
      headers['Content-Type'] = 'application/json';
    }
    const res = await fetch((opts.global ? '' : storeBase()) + path, { method, headers, body, cache: 'no-store' });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.slice(0, 300) }; }
    if (res.status === 401) {
      askToken(data && data.error);
      throw new AuthNeeded('token required');
    }
    return { status: res.status, ok: res.ok, data, headers: res.headers };
  }
  const errText = (r) => (r && r.data && r.data.error) || `HTTP ${r ? r.status : '?'}`;
  function reportError(what, e) {
    if (!(e instanceof AuthNeeded)) toast(`${what}: ${e && e.message ? e.message : e}`, 'error');
  }

  // Any 401 opens the token dialog; the token lives in sessionStorage (this tab only).
  function askToken(message) {
    $('token-error').textContent = S.token ? message || 'That token was refused.' : '';
    stopWatch();
    setConn('offline');
    if (!$('token-dialog').open) {
      $('token-dialog').showModal();
      $('token-input').focus();
    }
  }

  // ---- Access rules from /whoami --------------------------------------------------------------
  // The longest matching prefix decides; for the same prefix deny > admin > write > read.
  const RANK = { read: 1, write: 2, admin: 3, deny: 4 };
  function accessOf(key) {
    let best = null;
    for (const r of S.rules) {
      if (!key.startsWith(r.prefix)) continue;
      if (!best || r.prefix.length > best.prefix.length ||
          (r.prefix.length === best.prefix.length && (RANK[r.access] || 0) > (RANK[best.access] || 0))) best = r;
    }
    return best ? best.access : 'none';
  }
  const canWrite = (key) => ['write', 'admin'].includes(accessOf(key));
  const writesAnywhere = () => S.rules.some((r) => r.access === 'write' || r.access === 'admin');

  // ---- Key index ------------------------------------------------------------------------------
  // A sorted array: binary search gives any prefix's range. Adds and deletes wait in two sets and
  // are merged once per render, so a burst of 10,000 /watch events costs one O(n) merge.
  const Index = {
    keys: [], set: new Set(), adds: new Set(), dels: new Set(),
    lower: null,            // lower-cased keys for search, rebuilt after a change
    childCache: new Map(),  // folder prefix -> its children, until the key set changes

    replace(keys) {
      this.keys = Array.from(keys).sort();
      this.set = new Set(this.keys);
      this.adds.clear();
      this.dels.clear();
      this.touch();
    },
    touch() {
      this.lower = null;
      this.childCache.clear();
    },
    add(k) { // true when the key is new
      if (this.set.has(k)) return false;
      this.set.add(k);
      if (!this.dels.delete(k)) this.adds.add(k);
      return true;
    },
    remove(k) {
      if (!this.set.delete(k)) return false;
      if (!this.adds.delete(k)) this.dels.add(k);
      return true;
    },
    flush() {
      if (!this.adds.size && !this.dels.size) return;
      const dels = this.dels;
      const base = dels.size ? this.keys.filter((k) => !dels.has(k)) : this.keys;
      const add = Array.from(this.adds).sort();
      const out = new Array(base.length + add.length);
      let i = 0, j = 0, o = 0;
      while (i < base.length && j < add.length) out[o++] = base[i] < add[j] ? base[i++] : add[j++];
      while (i < base.length) out[o++] = base[i++];
      while (j < add.length) out[o++] = add[j++];
      this.keys = out;
      this.adds.clear();
      dels.clear();
      this.touch();
    },
    lowerBound(x) {
      let lo = 0, hi = this.keys.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.keys[mid] < x) lo = mid + 1; else hi = mid;
      }
      return lo;
    },
    // Keys starting with `prefix` are contiguous from `lo`: find where that run ends.
    prefixEnd(prefix, lo, hi = this.keys.length) {
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.keys[mid].startsWith(prefix)) lo = mid + 1; else hi = mid;
      }
      return lo;
    },
    range(prefix) {
      this.flush();
      if (!prefix) return [0, this.keys.length];
      const lo = this.lowerBound(prefix);
      return [lo, this.prefixEnd(prefix, lo)];
    },
    count(prefix) {
      const [lo, hi] = this.range(prefix);
      return hi - lo;
    },
    // A folder's direct children, in key order: {key} and {folder, count}. Each sub-folder's
    // whole range is skipped with one binary search: O(children * log n).
    children(prefix) {
      this.flush();
      let out = this.childCache.get(prefix);
      if (out) return out;
      out = [];
      const [lo, hi] = this.range(prefix);
      for (let i = lo; i < hi;) {
        const k = this.keys[i];
        const s = sepIndex(k, prefix.length);
        if (s < 0) { // a leaf
          out.push({ key: k });
          i++;
          continue;
        }
        const folder = k.slice(0, s + 1);
        const end = this.prefixEnd(folder, i, hi);
        out.push({ folder, count: end - i });
        i = end;
      }
      this.childCache.set(prefix, out);
      return out;
    },
    search(q, cap) {
      this.flush();
      if (!this.lower) this.lower = this.keys.map((k) => k.toLowerCase());
      const needle = q.toLowerCase();
      const out = [];
      let total = 0;
      for (let i = 0; i < this.lower.length; i++) {
        if (!this.lower[i].includes(needle)) continue;
        total++;
        if (out.length < cap) out.push(this.keys[i]);
      }
      return { total, keys: out };
    },
  };

  // ---- "Changed by someone else" highlights ---------------------------------------------------
  // Each mark also marks the key's folders (with the latest end under them), so a collapsed
  // folder row knows in O(1) whether to show it, even after a 100,000-key burst.
  function markChanged(key) {
    const until = Date.now() + CHANGED_MS;
    S.changed.set(key, until);
    for (const a of ancestors(key)) S.changedFolders.set(a, until);
  }
  function unmarkChanged(key) {
    if (!S.changed.delete(key)) return;
    S.changedFolders.clear();
    for (const [k, until] of S.changed) {
      for (const a of ancestors(k)) if ((S.changedFolders.get(a) || 0) < until) S.changedFolders.set(a, until);
    }
    scheduleRender(false);
  }
  function pruneChanged() {
    const now = Date.now();
    let pruned = false;
    for (const [k, until] of S.changed) if (until <= now) pruned = S.changed.delete(k);
    for (const [f, until] of S.changedFolders) if (until <= now) S.changedFolders.delete(f);
    return pruned;
  }
  const folderChanged = (prefix) => (S.changedFolders.get(prefix) || 0) > Date.now();

  // ---- Tree rendering -------------------------------------------------------------------------
  // The rows are a flat list of .row elements (aria-level carries the structure). Only expanded
  // levels are built, at most PAGE rows each; opening or closing a folder edits only its rows.
  // /watch bursts are coalesced: one update per animation frame, spaced by at least twice the
  // last rebuild's cost; a burst that added or removed no key only refreshes the marks.
  let renderQueued = false, needFull = false, lastRenderAt = 0, lastRenderCost = 0;
  let pointerDownInTree = false; // a rebuild between mousedown and mouseup would eat the click
  let tabStopId = null; // the row Tab enters the tree at: one Tab stop, arrows inside (roving)

  function scheduleRender(full = true) {
    if (full) needFull = true;
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      const wait = Math.max(100, 2 * lastRenderCost) - (performance.now() - lastRenderAt);
      setTimeout(runScheduledRender, Math.max(0, wait));
    });
  }
  function runScheduledRender() {
    if (pointerDownInTree) return void setTimeout(runScheduledRender, 50);
    if (needFull) renderTree();
    else refreshMarks();
  }
  function refreshMarks() {
    renderQueued = false;
    pruneChanged();
    for (const b of $('tree').querySelectorAll('.row > .key, .row > .folder')) {
      const on = b.dataset.key !== undefined ? S.changed.has(b.dataset.key)
        : b.getAttribute('aria-expanded') === 'false' && folderChanged(b.dataset.folder);
      if (b.classList.contains('changed') !== on) b.classList.toggle('changed', on);
    }
  }

  function rowIdOf(btn) {
    if (!btn) return null;
    if (btn.dataset.key !== undefined) return { attr: 'key', value: btn.dataset.key };
    if (btn.dataset.folder !== undefined) return { attr: 'folder', value: btn.dataset.folder };
    return null;
  }
  const findRow = (id) => id && $('tree').querySelector(`.row > button[data-${id.attr}="${CSS.escape(id.value)}"]`);
  const childId = (c) => (c.folder !== undefined ? { attr: 'folder', value: c.folder } : { attr: 'key', value: c.key });

  function renderTree() {
    renderQueued = needFull = false;
    lastRenderAt = performance.now();
    const tree = $('tree');
    const active = document.activeElement;
    const focusId = tree.contains(active) ? rowIdOf(active.closest('.row > button')) : null;
    pruneChanged();
    const frag = document.createDocumentFragment();
    if (S.search) renderSearch(frag);
    else renderLevel(frag, '', 1);
    if (!frag.childNodes.length) {
      const msg = S.search ? 'No key matches.' : S.loaded ? 'No keys yet.' : 'Loading…';
      frag.append(h('p', { class: 'tree-empty', role: 'none', text: msg }));
    }
    tree.replaceChildren(frag); // the scroll offset survives: no layout happens in between
    syncTabStop();
    const again = findRow(focusId);
    if (again) again.focus({ preventScroll: true });
    lastRenderCost = performance.now() - lastRenderAt;
  }

  // Exactly one row has tabindex 0: the last focused one if still shown, else the open key's,
  // else the first.
  function syncTabStop(focused) {
    const tree = $('tree');
    const want = focused || findRow(tabStopId) || tree.querySelector('.row > .selected') ||
      tree.querySelector('.row > button');
    const cur = tree.querySelector('.row > button[tabindex="0"]');
    if (cur && cur !== want) cur.tabIndex = -1;
    if (want) want.tabIndex = 0;
  }

  function makeRow(level, parent, btn) {
    const row = document.createElement('div');
    row.className = 'row';
    row.setAttribute('role', 'none');
    row.style.setProperty('--level', String(level - 1));
    row.dataset.level = String(level);
    row.dataset.parent = parent;
    row.append(btn);
    return row;
  }
  function treeItem(cls, level, pos, size) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.tabIndex = -1;
    b.setAttribute('role', 'treeitem');
    b.setAttribute('aria-level', String(level));
    b.setAttribute('aria-posinset', String(pos));
    b.setAttribute('aria-setsize', String(size));
    return b;
  }
  function folderRow(c, parent, level, open, pos, size) {
    const b = treeItem('folder', level, pos, size);
    b.dataset.folder = c.folder;
    b.setAttribute('aria-expanded', String(open));
    if (!open && folderChanged(c.folder)) b.classList.add('changed');
    const seg = c.folder.slice(parent.length);
    b.append(h('span', { class: 'name' }, seg.slice(0, -1), h('span', { class: 'sep', text: seg.slice(-1) })),
      h('span', { class: 'count', text: String(c.count) }));
    const row = makeRow(level, parent, b);
    // Not in the Tab order (one stop per row); keyboard users press "h" on the folder instead.
    row.append(h('button', { type: 'button', class: 'folder-history', tabindex: '-1', title: `History of ${c.folder} (key: h)`,
      'aria-label': `History of ${c.folder}`, dataset: { prefix: c.folder }, text: 'History' }));
    return row;
  }
  function keyRow(key, parent, level, pos, size, label) {
    const b = treeItem('key', level, pos, size);
    b.dataset.key = key;
    b.title = key;
    const selected = key === S.selectedKey;
    b.setAttribute('aria-selected', String(selected));
    if (selected) b.classList.add('selected');
    if (S.changed.has(key)) b.classList.add('changed');
    const seg = key.slice(parent.length);
    b.append(label || h('span', { class: seg ? 'name' : 'name empty-name', text: seg || '(empty name)' }));
    return makeRow(level, parent, b);
  }

  // Appends the rows of a folder's children from index `from`, recursing into expanded ones.
  function renderLevel(frag, prefix, level, from = 0) {
    const kids = Index.children(prefix);
    const shown = Math.min(S.levelLimit.get(prefix) || PAGE, kids.length);
    for (let i = from; i < shown; i++) {
      const c = kids[i];
      if (c.key !== undefined) {
        frag.append(keyRow(c.key, prefix, level, i + 1, kids.length));
        continue;
      }
      const open = S.expanded.has(c.folder);
      frag.append(folderRow(c, prefix, level, open, i + 1, kids.length));
      if (open) renderLevel(frag, c.folder, level + 1);
    }
    const left = kids.length - shown;
    if (left > 0) {
      const n = Math.min(PAGE, left);
      frag.append(makeRow(level, prefix, h('button', { type: 'button', class: 'more', tabindex: '-1', dataset: { prefix },
        'aria-label': `Show ${n} more (${left} not shown in ${prefix || 'the top level'})` },
      `Show ${n} more`, h('span', { class: 'left', text: ` (${left} not shown)` }))));
    }
  }

  // With text in #search, a flat list of matching keys (substring, any case) replaces the tree.
  function renderSearch(frag) {
    const t0 = performance.now();
    const { total, keys } = Index.search(S.search, SEARCH_CAP);
    const count = $('search-count');
    count.textContent = `${total} matches`;
    count.title = `${Index.keys.length} keys searched in ${Math.round(performance.now() - t0)} ms`;
    count.hidden = false;
    $('search-note').hidden = total <= SEARCH_CAP;
    $('search-note').textContent = `showing the first ${SEARCH_CAP}`;
    const needle = S.search.toLowerCase();
    keys.forEach((k, i) => {
      const at = k.toLowerCase().indexOf(needle);
      const label = at < 0 ? h('span', { class: 'name', text: k }) : h('span', { class: 'name' },
        k.slice(0, at), h('mark', { text: k.slice(at, at + needle.length) }), k.slice(at + needle.length));
      frag.append(keyRow(k, '', 1, i + 1, keys.length, label));
    });
  }
  function setSearch(q) {
    S.search = q;
    if (!q) $('search-count').hidden = $('search-note').hidden = true;
    scheduleRender();
  }

  // Opening a key from search or a link shows where it lives once the search is cleared.
  function revealKey(key) {
    for (const a of ancestors(key)) S.expanded.add(a);
  }

  // Opens or closes a folder by inserting or removing only its rows.
  function toggleFolder(prefix, open) {
    const isOpen = S.expanded.has(prefix);
    const want = open === undefined ? !isOpen : open;
    if (want === isOpen) return false;
    if (want) S.expanded.add(prefix); else S.expanded.delete(prefix);
    const b = findRow({ attr: 'folder', value: prefix });
    if (!b || needFull) return renderTree() || true;
    const row = b.closest('.row');
    b.setAttribute('aria-expanded', String(want));
    b.classList.toggle('changed', !want && folderChanged(prefix));
    if (want) {
      const frag = document.createDocumentFragment();
      renderLevel(frag, prefix, Number(row.dataset.level) + 1);
      row.after(frag);
    } else {
      let end = row.nextElementSibling;
      while (end && Number(end.dataset.level) > Number(row.dataset.level)) end = end.nextElementSibling;
      const range = document.createRange();
      range.setStartAfter(row);
      if (end) range.setEndBefore(end); else range.setEndAfter(row.parentNode.lastChild);
      range.deleteContents();
    }
    syncTabStop();
    return true;
  }

  function onTreeClick(e) {
    const b = e.target.closest('button');
    if (!b || !$('tree').contains(b)) return;
    if (b.classList.contains('folder')) {
      toggleFolder(b.dataset.folder);
      if (document.activeElement !== b) b.focus();
    } else if (b.classList.contains('folder-history')) {
      openFolder(b.dataset.prefix);
    } else if (b.classList.contains('key')) {
      openKey(b.dataset.key);
    } else if (b.classList.contains('more')) {
      const prefix = b.dataset.prefix;
      const limit = S.levelLimit.get(prefix) || PAGE;
      S.levelLimit.set(prefix, limit + PAGE);
      const moreRow = b.closest('.row');
      const frag = document.createDocumentFragment();
      renderLevel(frag, prefix, Number(moreRow.dataset.level), limit);
      moreRow.replaceWith(frag);
      syncTabStop();
      const first = findRow(childId(Index.children(prefix)[limit])); // keep the keyboard in place
      if (first) first.focus();
    }
  }

  // Keyboard: ArrowUp/Down move between visible rows, Home/End, ArrowRight/Left open and close
  // folders (or go to the first child / the parent), "h" opens a folder's history.
  function onTreeKey(e) {
    const b = e.target.closest('.row > button');
    if (!b || e.altKey || e.ctrlKey || e.metaKey) return;
    const row = b.closest('.row');
    const focusRow = (r) => r && r.firstElementChild.focus();
    const folder = b.classList.contains('folder') ? b.dataset.folder : null;
    switch (e.key) {
      case 'ArrowDown': focusRow(row.nextElementSibling); break;
      case 'ArrowUp': focusRow(row.previousElementSibling); break;
      case 'Home': focusRow(row.parentNode.querySelector('.row')); break;
      case 'End': focusRow(row.parentNode.lastElementChild); break;
      case 'ArrowRight':
        if (folder !== null && !toggleFolder(folder, true)) focusRow(row.nextElementSibling);
        break;
      case 'ArrowLeft':
        if (folder !== null && S.expanded.has(folder)) toggleFolder(folder, false);
        else if (row.dataset.parent) focusRow((findRow({ attr: 'folder', value: row.dataset.parent }) || row).closest('.row'));
        break;
      case 'h':
        if (folder === null) return;
        openFolder(folder);
        break;
      default: return;
    }
    e.preventDefault();
  }

  // ---- Line diff ------------------------------------------------------------------------------
  // LCS over the lines left after trimming the common head and tail. The table has n*m 16-bit
  // cells, so past ~4000x4000 changed lines it shows plain before/after instead.
  const DIFF_MAX_CELLS = 16e6;

  function diffLines(aText, bText) {
    const A = aText === '' ? [] : aText.split('\n');
    const B = bText === '' ? [] : bText.split('\n');
    let p = 0, s = 0;
    while (p < A.length && p < B.length && A[p] === B[p]) p++;
    while (s < A.length - p && s < B.length - p && A[A.length - 1 - s] === B[B.length - 1 - s]) s++;
    const rows = A.slice(0, p).map((l) => [' ', l]);
    const a = A.slice(p, A.length - s), b = B.slice(p, B.length - s);
    const n = a.length, m = b.length;
    const plain = n * m > DIFF_MAX_CELLS;
    if (plain || !n || !m) {
      for (const l of a) rows.push(['-', l]);
      for (const l of b) rows.push(['+', l]);
    } else {
      const ids = new Map(); // lines as small integers: the inner loop compares numbers
      const id = (l) => { if (!ids.has(l)) ids.set(l, ids.size); return ids.get(l); };
      const ai = Int32Array.from(a, id), bi = Int32Array.from(b, id);
      const w = m + 1;
      const T = new Uint16Array((n + 1) * w); // T[i*w+j] = LCS length of a[i..] and b[j..]
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          T[i * w + j] = ai[i] === bi[j] ? T[(i + 1) * w + j + 1] + 1 : Math.max(T[(i + 1) * w + j], T[i * w + j + 1]);
        }
      }
      let i = 0, j = 0;
      while (i < n && j < m) {
        if (ai[i] === bi[j]) { rows.push([' ', a[i++]]); j++; }
        else if (T[(i + 1) * w + j] >= T[i * w + j + 1]) rows.push(['-', a[i++]]);
        else rows.push(['+', b[j++]]);
      }
      while (i < n) rows.push(['-', a[i++]]);
      while (j < m) rows.push(['+', b[j++]]);
    }
    for (let i = A.length - s; i < A.length; i++) rows.push([' ', A[i]]);
    return { rows, plain };
  }

  const DIFF_CLASS = { ' ': 'diff-same', '+': 'diff-add', '-': 'diff-del' };
  const CONTEXT = 3;      // in long diffs, unchanged runs fold into a button but these lines
  const FOLD_ABOVE = 200; // around each change; short diffs show every line
  const diffRow = (op, line) => h('div', { class: DIFF_CLASS[op] }, h('span', { class: 'mark', text: op }), line);

  function renderDiff(container, aText, bText) {
    const { rows, plain } = diffLines(aText, bText);
    const adds = rows.filter((r) => r[0] === '+').length;
    const dels = rows.filter((r) => r[0] === '-').length;
    const frag = document.createDocumentFragment();
    if (plain) frag.append(h('div', { class: 'diff-note', text: 'Too large for a line diff: before, then after.' }));
    if (!adds && !dels) frag.append(h('div', { class: 'diff-note', text: 'No change in the value.' }));
    for (let i = 0; i < rows.length;) {
      if (rows[i][0] !== ' ') {
        frag.append(diffRow(...rows[i++]));
        continue;
      }
      let j = i;
      while (j < rows.length && rows[j][0] === ' ') j++;
      const head = i === 0 ? 0 : CONTEXT, tail = j === rows.length ? 0 : CONTEXT;
      if (rows.length > FOLD_ABOVE && j - i > head + tail + 10) {
        const hidden = rows.slice(i + head, j - tail);
        rows.slice(i, i + head).forEach((r) => frag.append(diffRow(...r)));
        const fold = h('button', { type: 'button', class: 'diff-fold', text: `⋯ ${hidden.length} unchanged lines` });
        fold.addEventListener('click', () => fold.replaceWith(...hidden.map((r) => diffRow(...r))));
        frag.append(fold);
        rows.slice(j - tail, j).forEach((r) => frag.append(diffRow(...r)));
      } else {
        rows.slice(i, j).forEach((r) => frag.append(diffRow(...r)));
      }
      i = j;
    }
    container.replaceChildren(frag);
    container.title = `${adds} line(s) added, ${dels} removed`;
  }

  // ---- Header: connection state, status bar (/health every 5 s), message line -----------------
  const CONN_TEXT = { live: 'Live', connecting: 'Connecting…', offline: 'Offline — retrying' };
  function setConn(state) {
    S.conn = state;
    const el = $('conn-state');
    if (el.dataset.state === state) return;
    el.dataset.state = state;
    el.textContent = CONN_TEXT[state];
  }
  // Called for every /watch event: the text is written at most once per frame.
  let shownRevision = null, revisionQueued = false;
  function setRevision(r) {
    if (typeof r !== 'number') return;
    shownRevision = r;
    if (revisionQueued) return;
    revisionQueued = true;
    requestAnimationFrame(() => {
      revisionQueued = false;
      $('status-revision').textContent = String(shownRevision);
    });
  }

  async function pollHealth() {
    let data = null;
    try { data = await (await fetch('/health', { cache: 'no-store' })).json(); } catch { /* shown below */ }
    const st = data && S.store && data.stores && data.stores[S.store] ? data.stores[S.store] : data;
    const health = $('status-health');
    health.textContent = health.dataset.health = st ? st.status || '?' : 'unreachable';
    if (st) {
      health.title = (st.connected === false ? 'The database is not connected. ' : '') +
        (st.stale_as_of_unix ? `Stale since ${new Date(st.stale_as_of_unix * 1000).toISOString()}` : '');
      $('status-count').textContent = String(st.count ?? '?');
      $('status-crc').textContent = String(st.crc ?? '?');
      const mine = data.stores && data.stores[S.store || S.stores[0]];
      $('status-streams').textContent = String((mine && mine.watch_streams) ?? '?');
      if (S.conn !== 'live') setRevision(st.revision); // when live, the stream says it first-hand
    }
    if (pruneChanged()) scheduleRender(false);
  }

  // #toast is a message line in the footer: it keeps the last message and never covers controls.
  let toastTimer = 0;
  function toast(msg, kind = 'ok') {
    const t = $('toast');
    t.dataset.kind = kind;
    t.textContent = msg;
    t.classList.remove('flash');
    void t.offsetWidth; // restarts the highlight animation
    t.classList.add('flash');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove('flash'), 1500);
  }

  // ---- /watch ---------------------------------------------------------------------------------
  // fetch() + ReadableStream, parsed as Server-Sent Events here: EventSource cannot send the
  // Authorization header. Reconnects with Last-Event-ID after 0.5 s, doubling up to 5 s.
  const STALL_MS = 45000; // the server sends a keep-alive every 15 s: three missed = a dead stream

  function stopWatch() {
    if (S.watchCtrl) S.watchCtrl.abort();
    S.watchCtrl = null;
  }

  async function watchLoop(gen) {
    let delay = 500;
    while (gen === S.gen) {
      setConn('connecting');
      const ctrl = new AbortController();
      S.watchCtrl = ctrl;
      try {
        const headers = authHeaders();
        let url = `${storeBase()}/watch`;
        if (S.lastEventId) headers['Last-Event-ID'] = S.lastEventId;
        else url += `?since=${encodeURIComponent(S.baseResumeId || String(S.baseRevision))}`;
        const res = await fetch(url, { headers, signal: ctrl.signal, cache: 'no-store' });
        if (res.status === 401) return askToken();
        if (res.status === 400 || res.status === 410) {
          // The resume point is unusable (too old, another history): start from a new snapshot.
          await loadSettings(gen);
        } else if (!res.ok || !res.body) {
          throw new Error(`HTTP ${res.status}`);
        } else {
          await readSse(res.body, gen, ctrl, () => { delay = 500; });
        }
      } catch (e) {
        if (e instanceof AuthNeeded) return;
      }
      if (gen !== S.gen) return;
      setConn('offline');
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }

  async function readSse(body, gen, ctrl, onReady) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let ev = { id: null, event: '', data: [] };
    let stall = setTimeout(() => ctrl.abort(), STALL_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== S.gen) return;
        clearTimeout(stall);
        stall = setTimeout(() => ctrl.abort(), STALL_MS);
        buf += decoder.decode(value, { stream: true });
        let start = 0, nl;
        while ((nl = buf.indexOf('\n', start)) >= 0) {
          let line = buf.slice(start, nl);
          start = nl + 1;
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') { // a blank line ends the event
            dispatchSse(ev, onReady);
            ev = { id: null, event: '', data: [] };
            continue;
          }
          if (line[0] === ':') continue; // a comment (keep-alive)
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val[0] === ' ') val = val.slice(1);
          if (field === 'data') ev.data.push(val);
          else if (field === 'event') ev.event = val;
          else if (field === 'id' && !val.includes('\0')) ev.id = val;
        }
        buf = buf.slice(start);
      }
    } finally {
      clearTimeout(stall);
      reader.cancel().catch(() => {});
    }
  }

  function dispatchSse(ev, onReady) {
    if (ev.id !== null) S.lastEventId = ev.id;
    if (!ev.data.length) return;
    let d;
    try { d = JSON.parse(ev.data.join('\n')); } catch { return; }
    if (ev.event === 'ready' || ev.event === 'reset') { // a reset also opens a stream
      setConn('live');
      onReady();
      if (ev.event === 'reset') applyReset(d);
      else setRevision(d.revision);
    } else if (ev.event === 'change') applyChange(d);
    else if (ev.event === 'progress') setRevision(d.revision);
  }

  // Each change is applied at once (a `more: true` group ends in the same state) and the tree
  // is redrawn once per frame. Whether someone else made it is decided only when none of this
  // page's writes awaits its response, so that all of our own revisions are known by then.
  function applyChange(d) {
    setRevision(d.revision);
    if (d.deleted ? Index.remove(d.key) : Index.add(d.key)) scheduleRender();
    if (S.inflight > 0) S.deferred.push(d);
    else classifyChange(d);
  }
  function classifyChange(d) {
    if (S.ownRevisions.has(d.revision)) return;
    markChanged(d.key);
    scheduleRender(false);
    foreignChangeForOpenKey(d);
    historyMayBeStale(d.key);
  }
  function writeFinished(revision) {
    if (revision) S.ownRevisions.add(revision);
    S.inflight = Math.max(0, S.inflight - 1);
    if (S.inflight > 0 || !S.deferred.length) return;
    const list = S.deferred;
    S.deferred = [];
    list.forEach(classifyChange);
  }

  function applyReset(d) {
    const settings = d.settings || {};
    Index.replace(Object.keys(settings));
    S.changed.clear();
    S.changedFolders.clear();
    if (d.history_reset) S.ownRevisions.clear();
    setRevision(d.revision);
    renderTree();
    toast(`The server reset the stream (${d.reason || 'no reason given'}); reloaded ${Index.keys.length} keys.`);
    const v = S.view;
    if (!v || v.mode !== 'edit') return;
    if (!isModified()) return void openKey(v.key, { keepTab: true, fromHash: true });
    v.theirs = { revision: d.revision, value: settings[v.key] ?? null, exists: v.key in settings };
    showNotice(`Changed elsewhere (revision ${d.revision}) — your save will show a conflict`, d.revision, true);
  }

  // ---- Loading: /whoami (rules, stores), /settings (the tree), then the stream -----------------
  async function loadSettings(gen) {
    const t0 = performance.now();
    const r = await api('GET', '/settings?keys');  // The tree needs the keys alone.
    if (gen !== S.gen) return;
    if (!r.ok) throw new Error(errText(r));
    Index.replace(Array.isArray(r.data) ? r.data : []);
    S.loaded = true;
    S.baseRevision = Number(r.headers.get('X-Syncconfig-Revision')) || 0;
    // Where to follow from, with the anchor the server checks (another history: a reset).
    S.baseResumeId = r.headers.get('X-Syncconfig-Resume-Id') || '';
    S.lastEventId = '';
    setRevision(S.baseRevision);
    const filtered = r.headers.get('X-Syncconfig-Filtered') === 'true';
    $('tree').setAttribute('aria-description', filtered ? 'Only the keys this token may read' : '');
    renderTree();
    // For whoever measures the console (load time, key count); the page itself does not read it.
    document.documentElement.dataset.loadMs = String(Math.round(performance.now() - t0));
    document.documentElement.dataset.keys = String(Index.keys.length);
  }

  function applyWhoami(w) {
    S.auth = !!w.auth;
    S.name = w.name ?? null;
    S.rules = Array.isArray(w.rules) ? w.rules : [];
    S.stores = Array.isArray(w.stores) ? w.stores : [];
    if (S.store && !S.stores.includes(S.store)) S.store = '';
    $('whoami').textContent = S.auth ? `token: ${S.name ?? '?'}` : 'no auth';
    $('logout').title = S.token ? 'Forget the token kept in this tab' : 'No token in use';
    const ro = !writesAnywhere();
    $('new-key').hidden = ro;
    $('readonly-badge').hidden = !ro;
    renderStoreSelect();
    pollHealth();  // The status of the store now known (the first poll may have come before).
  }

  // The store picker exists only when there is something to pick.
  function renderStoreSelect() {
    const slot = $('store-slot');
    if (S.stores.length <= 1) return slot.replaceChildren();
    const current = S.store || S.stores[0];
    const sel = h('select', { id: 'store-select' });
    for (const name of S.stores) sel.append(h('option', { value: name, text: name, selected: name === current }));
    sel.addEventListener('change', () => {
      S.store = sel.value === S.stores[0] ? '' : sel.value;
      sessionSet('syncconfig.store', S.store || null);
      resetStoreState();
      start();
    });
    slot.replaceChildren(h('label', { for: 'store-select', class: 'visually-hidden', text: 'Store' }), sel);
  }

  function resetStoreState() {
    for (const c of [S.expanded, S.levelLimit, S.changed, S.changedFolders, S.drafts, S.ownRevisions]) c.clear();
    S.lastEventId = '';
    S.loaded = false;
    closeViews();
  }

  async function start() {
    const gen = ++S.gen;
    stopWatch();
    setConn('connecting');
    try {
      const w = await api('GET', '/whoami', { global: true });
      if (gen !== S.gen) return;
      if (!w.ok) throw new Error(errText(w));
      applyWhoami(w.data || {});
      await loadSettings(gen);
      if (gen !== S.gen) return;
      applyHash();
      watchLoop(gen);
    } catch (e) {
      if (e instanceof AuthNeeded || gen !== S.gen) return;
      setConn('offline');
      toast(`Could not load: ${e.message}. Retrying in 5 s.`, 'error');
      await sleep(5000);
      if (gen === S.gen) start();
    }
  }

  // ---- Right pane: empty, folder (prefix history) or key view; #key=… / #prefix=… links -------
  function showView(which) {
    $('empty-view').hidden = which !== 'empty';
    $('folder-view').hidden = which !== 'folder';
    $('key-view').hidden = which !== 'key';
  }
  function leaveView() {
    stashDraft();
    S.view = null;
    S.viewSeq++;
    setSelected(null);
  }
  function closeViews() {
    leaveView();
    showView('empty');
    History.reset();
  }
  function setSelected(key) {
    const prev = S.selectedKey;
    S.selectedKey = key;
    for (const k of [prev, key]) {
      const b = k !== null && findRow({ attr: 'key', value: k });
      if (!b) continue;
      b.classList.toggle('selected', k === key);
      b.setAttribute('aria-selected', String(k === key));
    }
  }

  function setHash(kind, value) {
    const want = kind ? `#${kind}=${enc(value)}` : '';
    if (location.hash !== want) history.pushState(null, '', want || location.pathname + location.search);
  }
  function applyHash() {
    const m = /^#(key|prefix)=(.*)$/.exec(location.hash);
    let value;
    try { value = m && decodeURIComponent(m[2]); } catch { return; }
    if (!m) return;
    if (m[1] === 'prefix') return openFolder(value, { fromHash: true });
    if (S.view && S.view.key === value) return;
    revealKey(value);
    renderTree();
    openKey(value, { fromHash: true });
  }

  function openFolder(prefix, opts = {}) {
    leaveView();
    showView('folder');
    S.folderPrefix = prefix;
    $('folder-name').textContent = prefix || 'All keys';
    const n = Index.count(prefix);
    $('folder-count').textContent = `${n} key${n === 1 ? '' : 's'}${prefix ? ` under ${prefix}` : ''}`;
    $('folder-history-slot').append($('history-box'));
    History.load({ mode: 'prefix', prefix });
    if (!opts.fromHash) setHash('prefix', prefix);
  }

  // ---- Key view -------------------------------------------------------------------------------
  // S.view = {mode: 'edit'|'create', key, base: {revision, value, exists} (what a save is a CAS
  // against), baseText (its pretty JSON), loadedText (the editor text when loaded: "modified"
  // means different), theirs: the newest state seen from someone else, or null}
  const editor = () => $('editor');
  let saveBtn, deleteBtn, revertBtn, formatBtn;
  const absent = () => ({ revision: 0, value: null, exists: false });
  const newView = (mode, key) => ({ mode, key, base: absent(), baseText: '', loadedText: '', theirs: null });
  const panelOpen = (id) => !$(id).hidden;

  function isModified() {
    return !!S.view && (editor().value !== S.view.loadedText || panelOpen('save-confirm') || panelOpen('delete-confirm'));
  }
  // Opening something else keeps an unsaved edit; reopening the key brings it back.
  function stashDraft() {
    const v = S.view;
    if (!v || v.mode !== 'edit' || editor().value === v.loadedText) return;
    S.drafts.set(v.key, { text: editor().value, base: v.base, baseText: v.baseText, comment: $('comment').value });
  }

  function hidePanels() {
    for (const id of ['save-confirm', 'delete-confirm', 'conflict']) $(id).hidden = true;
  }
  function hideNotice() {
    $('notice').hidden = true;
    $('notice').removeAttribute('data-revision');
  }
  function showNotice(text, revision, withTheirs) {
    $('notice-text').textContent = text;
    $('notice').dataset.revision = String(revision);
    $('notice-show-theirs').hidden = !withTheirs;
    $('notice').hidden = false;
  }

  function setMeta(entry, last) {
    $('key-revision').textContent = entry ? String(entry.revision) : '—';
    $('key-updated').replaceChildren(entry && entry.updated_at ? timeEl(entry.updated_at) : '—');
    $('key-actor').textContent = $('key-actor').title = (last && last.actor) || '';
    $('key-comment-last').textContent = (last && last.comment) || '';
    const lease = entry && entry.lease;
    $('key-lease-row').hidden = !lease;
    if (lease) {
      $('key-lease').textContent = typeof lease === 'object'
        ? `${lease.id} (ttl ${lease.ttl} s, expires ${fmtTime(lease.expires_at)})` : String(lease);
    }
  }

  function writableNow() {
    const v = S.view;
    if (!v) return false;
    if (v.mode === 'edit') return canWrite(v.key);
    const k = $('key-input').value;
    return writesAnywhere() && (!k || canWrite(k));
  }
  // Read-only keys get no save/delete buttons at all (removed, not merely hidden).
  function renderActions() {
    const v = S.view;
    const w = writableNow();
    const list = !w ? [] : v.mode === 'edit' && v.base.exists
      ? [saveBtn, deleteBtn, formatBtn, revertBtn] : [saveBtn, formatBtn, revertBtn];
    $('key-actions').replaceChildren(...list);
    $('write-area').hidden = !w;
    $('readonly-note').hidden = w;
    editor().readOnly = !w;
    validateEditor();
  }

  function setTab(which) {
    const hist = which === 'history';
    $('tab-value').setAttribute('aria-selected', String(!hist));
    $('tab-history').setAttribute('aria-selected', String(hist));
    $('tab-value').tabIndex = hist ? -1 : 0;
    $('tab-history').tabIndex = hist ? 0 : -1;
    $('panel-value').hidden = hist;
    $('panel-history').hidden = !hist;
    const v = S.view;
    if (hist && v && v.mode === 'edit' && !(History.mode === 'key' && History.key === v.key && History.loaded)) {
      History.load({ mode: 'key', key: v.key });
    }
  }

  function loadEditor(text) {
    editor().value = text;
    S.view.loadedText = text;
    validateEditor();
  }

  async function openKey(key, opts = {}) {
    const same = !!S.view && S.view.key === key && S.view.mode === 'edit';
    if (!same) leaveView();
    const seq = ++S.viewSeq;
    unmarkChanged(key);
    setSelected(key);
    if (!opts.fromHash) setHash('key', key);
    showView('key');
    $('key-history-slot').append($('history-box'));
    $('key-input-row').hidden = true;
    $('key-name').textContent = key;
    $('tab-history').disabled = false;
    if (!opts.keepNotice) hideNotice();
    hidePanels();
    clearCommentError();
    if (!same) {
      // Until the entry arrives: nothing editable, nothing that looks like an edit.
      S.view = newView('edit', key);
      $('comment').value = '';
      if (!opts.keepTab) setTab('value');
      setMeta(null, null);
      editor().value = '';
      editor().readOnly = true;
      $('key-actions').replaceChildren();
    }
    $('key-view').setAttribute('aria-busy', 'true');
    let r, last = null;
    try {
      const [e, hist] = await Promise.all([api('GET', `/entries/${enc(key)}`),
        api('GET', `/history/${enc(key)}?limit=1`).catch(() => null)]);
      r = e;
      last = hist && hist.ok && hist.data && hist.data.history ? hist.data.history[0] || null : null;
    } catch (e) {
      if (seq === S.viewSeq) reportError(`Could not open ${key}`, e);
      return;
    } finally {
      if (seq === S.viewSeq) $('key-view').removeAttribute('aria-busy');
    }
    if (seq !== S.viewSeq) return; // the user opened something else meanwhile
    if (r.status === 404) {
      openCreate(key, 'This key does not exist (any more). Saving creates it.', opts.keepNotice);
      return setMeta(null, last);
    }
    if (!r.ok) return toast(`Could not open ${key}: ${errText(r)}`, 'error');
    const entry = r.data;
    const v = S.view = newView('edit', key);
    v.base = { revision: entry.revision, value: entry.value, exists: true };
    v.baseText = pretty(entry.value);
    setMeta(entry, last);
    loadEditor(v.baseText);
    const draft = S.drafts.get(key);
    if (draft) {
      S.drafts.delete(key);
      Object.assign(v, { base: draft.base, baseText: draft.baseText, loadedText: draft.baseText });
      editor().value = draft.text;
      if (!$('comment').value) $('comment').value = draft.comment || '';
      if (entry.revision !== draft.base.revision) {
        v.theirs = { revision: entry.revision, value: entry.value, exists: true };
        showNotice(`Changed elsewhere (revision ${entry.revision}) — your save will show a conflict`, entry.revision, true);
      }
      toast(`Restored your unsaved edit of ${key} (from revision ${draft.base.revision}).`);
    }
    renderActions();
    if (panelOpen('panel-history')) History.load({ mode: 'key', key });
  }

  // Create mode: #key-input names the key; the save is If-None-Match: * (only if absent).
  function openCreate(key = '', message = '', keepNotice = false) {
    if (!S.view || S.view.key !== key) leaveView();
    S.viewSeq++;
    setSelected(null);
    showView('key');
    hidePanels();
    if (!keepNotice) hideNotice();
    clearCommentError();
    setTab('value');
    $('tab-history').disabled = true;
    $('key-name').textContent = key || 'New key';
    $('key-input-row').hidden = false;
    $('key-input').value = key;
    $('key-input').removeAttribute('aria-invalid');
    setMeta(null, null);
    S.view = newView('create', key);
    loadEditor('{}');
    renderActions();
    if (message && !keepNotice) showNotice(message, 0, false);
  }

  function newKey() {
    // Start the name in the folder the user is in: it saves typing the common prefix.
    const active = document.activeElement;
    let start = '';
    if (active && active.closest('#tree .row')) start = active.dataset.folder || active.closest('.row').dataset.parent;
    else if (S.view && S.view.key) start = ancestors(S.view.key).pop() || '';
    openCreate('');
    $('key-input').value = S.view.key = start;
    setHash(null);
    renderActions();
    $('key-input').focus();
  }

  // Validated on every keystroke: #editor-error says why the text is not JSON; #save waits.
  function parseError(text) {
    if (text.trim() === '') return 'Empty: type a JSON value (for example {} or null).';
    try { JSON.parse(text); return ''; } catch (e) {
      let msg = String(e.message || 'Invalid JSON');
      const m = /at position (\d+)/.exec(msg);
      if (m && !/line \d+/.test(msg)) {
        const before = text.slice(0, Number(m[1])).split('\n');
        msg += ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
      }
      return msg;
    }
  }
  function validateEditor() {
    const err = parseError(editor().value);
    $('editor-error').textContent = err;
    if (err) editor().setAttribute('aria-invalid', 'true'); else editor().removeAttribute('aria-invalid');
    saveBtn.disabled = formatBtn.disabled = !!err;
    const v = S.view;
    const dirty = !!v && v.mode === 'edit' && editor().value !== v.loadedText;
    revertBtn.disabled = !dirty;
    $('key-view').classList.toggle('dirty', dirty);
    return !err;
  }

  function commentMissing(message) {
    $('comment').setAttribute('aria-invalid', 'true');
    $('comment-error').textContent = message;
    $('comment').focus();
  }
  function clearCommentError() {
    $('comment').removeAttribute('aria-invalid');
    $('comment-error').textContent = '';
  }
  const targetKey = () => (S.view.mode === 'create' ? $('key-input').value : S.view.key);

  // A write: counted in-flight so that /watch events wait to be classified (see applyChange).
  async function write(button, what, request) {
    button.disabled = true;
    S.inflight++;
    let r = null, rev = 0;
    try {
      r = await request();
      if (r.ok) rev = (r.data && r.data.revision) || 0;
    } catch (e) {
      reportError(`${what} failed`, e);
    } finally {
      writeFinished(rev);
      button.disabled = false;
    }
    return r;
  }

  function startSave() {
    const v = S.view;
    if (!v || !writableNow() || !validateEditor()) return;
    if (v.mode === 'create') {
      const k = $('key-input').value;
      const bad = !k ? 'Type a key name.' : new TextEncoder().encode(k).length > 255 ? 'A key is at most 255 bytes.'
        : !canWrite(k) ? 'This token may not write that key.' : '';
      if (bad) {
        $('key-input').setAttribute('aria-invalid', 'true');
        $('key-input').focus();
        return toast(bad, 'error');
      }
      $('key-input').removeAttribute('aria-invalid');
    }
    if (!$('comment').value.trim()) return commentMissing('A comment is required: say why you change this.');
    clearCommentError();
    renderDiff($('diff-preview'), v.baseText, pretty(JSON.parse(editor().value)));
    hidePanels();
    $('save-confirm').hidden = false;
    $('confirm-save').focus();
  }

  // A 412 whose current value is still the one the edit started from: a write of the same value
  // moved the revision while the user edited (its /watch event keeps an unsaved edit as it is).
  // Nothing the user has not seen changed, so the approved diff still holds: move the base and
  // send again.
  function rebaseIfUnchanged(v, data) {
    if (!v.base.exists || !(Number(data.revision) > v.base.revision)) return false;
    if (pretty(data.value) !== v.baseText) return false;
    v.base.revision = Number(data.revision);
    $('key-revision').textContent = String(v.base.revision);
    return true;
  }

  async function confirmSave(rebased = false) {
    const v = S.view;
    if (!v || !validateEditor()) return;
    const comment = $('comment').value.trim();
    if (!comment) {
      $('save-confirm').hidden = true;
      return commentMissing('A comment is required: say why you change this.');
    }
    const key = targetKey();
    const text = editor().value;
    const headers = { 'X-Syncconfig-Comment': enc(comment) };
    if (v.base.exists) headers['If-Match'] = `"${v.base.revision}"`;
    else headers['If-None-Match'] = '*';
    const r = await write($('confirm-save'), 'Save', () => api('PUT', `/settings/${enc(key)}`, { body: text, headers }));
    if (!r || S.view !== v) return;
    if (r.status === 412 && !rebased && rebaseIfUnchanged(v, r.data || {})) return confirmSave(true);
    $('save-confirm').hidden = true;
    if (r.status === 412) return showConflict(r.data || {}, text);
    if (!r.ok) return toast(`Save failed: ${errText(r)}`, 'error');
    Index.add(key);
    revealKey(key);
    renderTree();
    $('comment').value = '';
    S.drafts.delete(key);
    toast(`Saved ${key} at revision ${r.data.revision}.`);
    await openKey(key, { keepTab: true });
  }

  // #delete asks for confirmation (and the comment, too); the DELETE is a CAS like a save.
  function startDelete() {
    const v = S.view;
    if (!v || v.mode !== 'edit') return;
    $('delete-confirm-text').textContent =
      `Delete ${v.key} (revision ${v.base.revision})? Its history is kept: it can be restored from there.`;
    hidePanels();
    $('delete-confirm').hidden = false;
    if (!$('comment').value.trim()) commentMissing('A comment is required to delete.');
    else $('confirm-delete').focus();
  }

  async function confirmDelete(rebased = false) {
    const v = S.view;
    if (!v || v.mode !== 'edit') return;
    const comment = $('comment').value.trim();
    if (!comment) return commentMissing('A comment is required to delete.');
    const key = v.key;
    const headers = { 'If-Match': `"${v.base.revision}"`, 'X-Syncconfig-Comment': enc(comment) };
    const r = await write($('confirm-delete'), 'Delete', () => api('DELETE', `/settings/${enc(key)}`, { headers }));
    if (!r || S.view !== v) return;
    if (r.status === 412 && !rebased && rebaseIfUnchanged(v, r.data || {})) return confirmDelete(true);
    $('delete-confirm').hidden = true;
    if (r.status === 412) return showConflict(r.data || {}, editor().value);
    if (!r.ok && r.status !== 404) return toast(`Delete failed: ${errText(r)}`, 'error');
    Index.remove(key);
    S.drafts.delete(key);
    toast(r.ok ? `Deleted ${key} at revision ${r.data.revision}.` : `${key} was already absent.`);
    closeViews();
    setHash(null);
    renderTree();
  }

  // The conflict view: their current state beside the user's text. Nothing is dropped unless
  // the user picks "take theirs".
  function showConflict(data, mineText) {
    const v = S.view;
    if (!v) return;
    const exists = Number(data.revision) > 0;
    v.theirs = { revision: Number(data.revision) || 0, value: exists ? data.value : null, exists };
    $('conflict-revision').textContent = String(v.theirs.revision);
    $('conflict-theirs').textContent = exists ? pretty(data.value) : '(absent — the key was deleted)';
    $('conflict-mine').textContent = mineText;
    hidePanels();
    hideNotice();
    $('conflict').hidden = false;
    $('conflict-keep-mine').focus();
    toast(`Conflict: ${targetKey()} is at revision ${v.theirs.revision} now. Nothing was written.`, 'error');
  }

  // Their revision becomes the base; the user's text stays, so the next save is a CAS over theirs.
  function keepMine() {
    const v = S.view;
    if (!v || !v.theirs) return;
    const t = v.theirs;
    v.base = { revision: t.revision, value: t.value, exists: t.exists };
    v.baseText = v.loadedText = t.exists ? pretty(t.value) : '';
    if (!t.exists && v.mode === 'edit') { // theirs is "absent": the next save re-creates the key
      v.mode = 'create';
      $('key-input-row').hidden = false;
      $('key-input').value = v.key;
    } else if (t.exists && v.mode === 'create') { // a create that met an existing key
      v.mode = 'edit';
      v.key = $('key-input').value;
      $('key-input-row').hidden = true;
      $('key-name').textContent = v.key;
      $('tab-history').disabled = false;
    }
    $('key-revision').textContent = t.exists ? String(t.revision) : '—';
    $('conflict').hidden = true;
    hideNotice();
    renderActions();
    toast(`Your edit now applies on top of revision ${t.revision}; save again to write it.`);
    editor().focus();
  }

  async function takeTheirs() {
    const key = targetKey();
    $('conflict').hidden = true;
    S.drafts.delete(key);
    await openKey(key, { keepTab: true });
    toast(`Dropped your edit; showing ${key} as it is now.`);
  }

  // A change by someone else to the open key: reload an unmodified editor, else only warn.
  function foreignChangeForOpenKey(d) {
    const v = S.view;
    if (!v || v.key !== d.key || !v.key || (v.base.exists && d.revision <= v.base.revision)) return;
    v.theirs = { revision: d.revision, value: d.deleted ? null : d.value, exists: !d.deleted };
    if (isModified() || panelOpen('conflict') || v.mode !== 'edit') {
      return showNotice(`Changed elsewhere (revision ${d.revision}) — your save will show a conflict`, d.revision, true);
    }
    const what = !d.deleted ? 'Updated by another writer to revision'
      : d.expired ? 'Expired (its lease ended) at revision' : 'Deleted by another writer at revision';
    showNotice(`${what} ${d.revision}`, d.revision, false);
    openKey(v.key, { keepTab: true, keepNotice: true, fromHash: true });
  }

  // ---- History: one component (#history-box), moved between the key view and folder view -----
  const History = {
    mode: 'key', key: '', prefix: '',
    rows: [],
    picked: [], // indexes into rows, in the order they were ticked
    seq: 0, loaded: false, stale: false, refreshTimer: 0,

    reset() {
      this.seq++;
      this.rows = [];
      this.picked = [];
      this.loaded = this.stale = false;
      $('history').replaceChildren();
      $('history-more').hidden = $('history-diff-wrap').hidden = true;
      this.updateHint();
    },
    target() {
      return this.mode === 'key' ? { mode: 'key', key: this.key } : { mode: 'prefix', prefix: this.prefix };
    },

    async load(target, older = false) {
      if (!older) {
        this.reset();
        Object.assign(this, { mode: target.mode, key: target.key || '', prefix: target.prefix || '' });
        $('history').setAttribute('aria-busy', 'true');
      }
      const seq = this.seq;
      let path = this.mode === 'key' ? `/history/${enc(this.key)}?limit=${HISTORY_PAGE}`
        : `/history?prefix=${enc(this.prefix)}&limit=${HISTORY_PAGE}`;
      if (older && this.rows.length) path += `&before=${this.rows[this.rows.length - 1].revision}`;
      let r;
      try { r = await api('GET', path); } catch (e) { return reportError('Could not load the history', e); }
      if (seq !== this.seq) return;
      $('history').removeAttribute('aria-busy');
      if (!r.ok) return toast(`Could not load the history: ${errText(r)}`, 'error');
      const list = (r.data && r.data.history) || [];
      const from = this.rows.length;
      this.rows.push(...list);
      this.loaded = true;
      const frag = document.createDocumentFragment();
      list.forEach((e, i) => frag.append(this.row(e, from + i)));
      if (!this.rows.length) frag.append(h('p', { class: 'meta', text: 'No history (it may have been truncated).' }));
      $('history').append(frag);
      $('history-more').hidden = list.length < HISTORY_PAGE;
    },

    row(e, idx) {
      const prefixMode = this.mode === 'prefix';
      // Restoring the newest row would change nothing; prefix history is read-only.
      const restorable = !prefixMode && idx > 0 && canWrite(e.key);
      const cb = h('input', { type: 'checkbox', class: 'compare', 'aria-label': `Compare revision ${e.revision}` });
      cb.addEventListener('change', () => this.pick(idx, cb.checked));
      const pre = h('pre', { class: 'code value', hidden: true, text: e.op === 'set' ? pretty(e.value) : '(absent)' });
      const show = h('button', { type: 'button', class: 'show-value', 'aria-expanded': 'false', text: 'Value' });
      show.addEventListener('click', () => {
        pre.hidden = !pre.hidden;
        show.setAttribute('aria-expanded', String(!pre.hidden));
      });
      return h('div', { class: `history-row op-${e.op}${idx === 0 && !prefixMode ? ' current' : ''}`, role: 'listitem',
        dataset: { revision: e.revision, index: idx } },
      h('span', { class: 'op', text: e.op }),
      h('span', { class: 'rev', title: 'Revision', text: `rev ${e.revision}` }),
      prefixMode && h('span', { class: 'key', text: e.key }),
      timeEl(e.changed_at, 'time'),
      h('span', { class: 'actor', title: e.actor || null, text: e.actor || '' }),
      h('span', { class: 'comment', text: e.comment || '' }),
      h('span', { class: 'row-actions' },
        h('label', { class: 'compare-label' }, cb, ' Compare'), show,
        prefixMode && h('button', { type: 'button', class: 'open-key', text: 'Open', onclick: () => openKey(e.key) }),
        restorable && h('button', { type: 'button', class: 'restore', title: 'Restore this version', text: 'Restore',
          onclick: () => openRestore(e) })),
      pre);
    },

    // Two ticked versions are diffed, older -> newer; a third tick drops the first one.
    pick(idx, on) {
      this.picked = this.picked.filter((i) => i !== idx);
      if (on) this.picked.push(idx);
      while (this.picked.length > 2) {
        const cb = $('history').querySelector(`.history-row[data-index="${this.picked.shift()}"] input.compare`);
        if (cb) cb.checked = false;
      }
      this.updateHint();
      $('history-diff-wrap').hidden = this.picked.length !== 2;
      if (this.picked.length !== 2) return;
      // Rows are newest first: a larger index is older (also among rows of one transaction).
      const [newer, older] = this.picked.slice().sort((a, b) => a - b).map((i) => this.rows[i]);
      const text = (e) => (e.op === 'set' ? pretty(e.value) : '(absent)');
      const label = (e) => `rev ${e.revision}${this.mode === 'prefix' ? ` ${e.key}` : ''}`;
      $('history-diff-title').textContent = `Comparison: ${label(older)} → ${label(newer)}`;
      renderDiff($('history-diff'), text(older), text(newer));
      $('history-diff-wrap').scrollIntoView({ block: 'nearest' });
    },

    updateHint() {
      const refresh = this.stale && h('button', { type: 'button', class: 'link', text: 'Newer versions exist — refresh',
        onclick: () => this.load(this.target()) });
      $('history-hint').replaceChildren(refresh || '', refresh ? ' ' : '',
        ['Tick two versions to compare them.', 'Tick one more version to compare.',
          'Tick another version to compare a different pair.'][this.picked.length]);
    },
  };

  // A change under the history on show: reload it, unless the user is comparing (the ticks
  // would be lost): then offer a refresh.
  function historyMayBeStale(key) {
    if (!History.loaded || !(History.mode === 'key' ? History.key === key : key.startsWith(History.prefix))) return;
    if (!$('history-box').offsetParent) return void (History.loaded = false); // reloads when shown
    if (History.picked.length) {
      History.stale = true;
      return History.updateHint();
    }
    clearTimeout(History.refreshTimer);
    History.refreshTimer = setTimeout(() => { if (!History.picked.length) History.load(History.target()); }, 300);
  }

  // Restore = POST /rollback to the row's revision: "the state right after revision R".
  let restoreTarget = null;
  function openRestore(e) {
    restoreTarget = e;
    $('restore-text').textContent = e.op === 'set'
      ? `Restore ${e.key} to its value at revision ${e.revision}? This writes a new revision.`
      : `Restore ${e.key} to its state after revision ${e.revision} (absent)? This deletes the key.`;
    $('restore-comment').value = '';
    $('restore-comment').removeAttribute('aria-invalid');
    $('restore-error').textContent = '';
    $('restore-dialog').showModal();
    $('restore-comment').focus();
  }
  async function confirmRestore(ev) {
    ev.preventDefault(); // method="dialog" would close the dialog before the result is known
    const e = restoreTarget;
    if (!e) return;
    const comment = $('restore-comment').value.trim();
    if (!comment) {
      $('restore-comment').setAttribute('aria-invalid', 'true');
      $('restore-error').textContent = 'A comment is required: say why you restore this version.';
      return $('restore-comment').focus();
    }
    const r = await write($('restore-confirm'), 'Restore',
      () => api('POST', '/rollback', { body: { key: e.key, to: e.revision, comment } }));
    if (!r) return $('restore-dialog').close();
    if (!r.ok) {
      $('restore-error').textContent = errText(r);
      return toast(`Restore failed: ${errText(r)}`, 'error');
    }
    $('restore-dialog').close();
    restoreTarget = null;
    const rev = r.data.revision || 0;
    toast(rev ? `Restored ${e.key} to revision ${e.revision} (new revision ${rev}).`
      : `${e.key} was already in that state: nothing written.`);
    S.drafts.delete(e.key);
    await openKey(e.key, { keepTab: true });
    History.load({ mode: 'key', key: e.key });
  }

  // ---- Wiring ---------------------------------------------------------------------------------
  const on = (id, type, fn) => $(id).addEventListener(type, fn);

  function init() {
    applyTheme(document.documentElement.dataset.theme);
    S.store = sessionGet('syncconfig.store') || '';
    on('theme-toggle', 'click', () => {
      const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
      applyTheme(next);
      try { localStorage.setItem(THEME_KEY, next); } catch { /* not persisted */ }
    });
    darkQuery.addEventListener('change', (e) => { if (!storedTheme()) applyTheme(e.matches ? 'dark' : 'light'); });

    on('logout', 'click', () => {
      S.token = '';
      sessionSet('syncconfig.token', null);
      stopWatch();
      resetStoreState();
      Index.replace([]);
      renderTree();
      toast('Token forgotten.');
      start();
    });
    on('token-form', 'submit', (e) => {
      e.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return void ($('token-error').textContent = 'Type a token.');
      S.token = t;
      sessionSet('syncconfig.token', t);
      $('token-input').value = '';
      $('token-dialog').close();
      start();
    });
    on('token-dialog', 'cancel', (e) => e.preventDefault()); // nothing works without a token

    // Tree and search
    on('tree', 'click', onTreeClick);
    on('tree', 'keydown', onTreeKey);
    on('tree', 'focusin', (e) => {
      const b = e.target.closest('.row > button:first-child');
      if (!b) return;
      tabStopId = rowIdOf(b);
      syncTabStop(b);
    });
    on('tree', 'pointerdown', () => { pointerDownInTree = true; });
    window.addEventListener('pointerup', () => { pointerDownInTree = false; });
    on('search', 'input', (e) => setSearch(e.target.value));
    on('search', 'keydown', (e) => {
      const first = $('tree').querySelector('.row > button');
      if (e.key === 'ArrowDown' && first) {
        e.preventDefault();
        first.focus();
      } else if (e.key === 'Escape' && e.target.value) {
        e.target.value = '';
        setSearch('');
      }
    });
    on('new-key', 'click', newKey);
    on('all-history', 'click', () => openFolder(''));
    on('prefix-history', 'click', () => History.load({ mode: 'prefix', prefix: S.folderPrefix }));

    // Key view. The action buttons are made here; renderActions() adds or removes them.
    saveBtn = h('button', { id: 'save', type: 'button', class: 'primary', text: 'Save…', onclick: startSave });
    deleteBtn = h('button', { id: 'delete', type: 'button', class: 'danger', text: 'Delete…', onclick: startDelete });
    formatBtn = h('button', { id: 'format', type: 'button', text: 'Format', onclick: () => {
      if (validateEditor()) editor().value = pretty(JSON.parse(editor().value));
      validateEditor();
    } });
    revertBtn = h('button', { id: 'revert', type: 'button', text: 'Revert', onclick: () => {
      if (S.view) loadEditor(S.view.loadedText);
      hidePanels();
    } });
    on('editor', 'input', () => {
      validateEditor();
      $('save-confirm').hidden = true; // the preview no longer matches the text
    });
    on('comment', 'input', () => { if ($('comment').value.trim()) clearCommentError(); });
    on('comment', 'keydown', (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      if (panelOpen('delete-confirm')) confirmDelete(); else startSave();
    });
    on('key-input', 'input', () => {
      const k = $('key-input').value;
      $('key-name').textContent = k || 'New key';
      $('key-input').removeAttribute('aria-invalid');
      if (S.view) S.view.key = k;
      renderActions();
    });
    on('confirm-save', 'click', () => confirmSave());
    on('cancel-save', 'click', () => {
      $('save-confirm').hidden = true;
      editor().focus();
    });
    on('confirm-delete', 'click', () => confirmDelete());
    on('cancel-delete', 'click', () => {
      $('delete-confirm').hidden = true;
      clearCommentError();
    });
    on('conflict-keep-mine', 'click', keepMine);
    on('conflict-take-theirs', 'click', takeTheirs);
    on('notice-show-theirs', 'click', () => {
      const t = S.view && S.view.theirs;
      if (t) showConflict({ revision: t.revision, value: t.value }, editor().value);
    });

    // Tabs: ArrowLeft/Right switch, as in the ARIA tabs pattern
    on('tab-value', 'click', () => setTab('value'));
    on('tab-history', 'click', () => setTab('history'));
    document.querySelector('.tabs').addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
      const toHistory = document.activeElement === $('tab-value') && !$('tab-history').disabled;
      setTab(toHistory ? 'history' : 'value');
      $(toHistory ? 'tab-history' : 'tab-value').focus();
      e.preventDefault();
    });

    on('history-more', 'click', () => History.load(null, true));
    on('restore-form', 'submit', confirmRestore);
    on('restore-cancel', 'click', () => $('restore-dialog').close());

    // Global keys: "/" jumps to the search, Ctrl/Cmd+S saves
    document.addEventListener('keydown', (e) => {
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        $('search').focus();
        $('search').select();
      } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 's' && !$('key-view').hidden) {
        e.preventDefault();
        if (panelOpen('save-confirm')) confirmSave(); else startSave();
      }
    });
    window.addEventListener('popstate', () => (location.hash ? applyHash() : closeViews()));

    pollHealth();
    setInterval(pollHealth, 5000);
    renderTree();
    start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
