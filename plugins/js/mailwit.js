// mailwit plugin SDK for JavaScript (ComponentizeJS).
//
// A plugin is an ES module that registers hook functions; `build.mjs` turns it into a component
// exporting exactly the hooks and importing exactly the host interfaces of its
// `mailwit-plugin.json`:
//
//   import { onMail, reject } from './mailwit.js';
//   onMail((session, reversePath) => {
//     if (reversePath.address.endsWith('@spam.test')) return reject(550, '5.7.1', 'Go away');
//     // returning nothing means `continue`
//   });
//
// Hook functions get the WIT records as jco maps them (camelCase fields, u64 as BigInt, options as
// value-or-undefined) and return a verdict built here. Host calls (config, log, kv, dns, clock)
// work only while a hook runs, not while the module is evaluated at build time.

const hooks = new Map();
let host = {};

function register(hook) {
  return (fn) => {
    if (hooks.has(hook)) throw new Error(`a function is already registered for the ${hook} hook`);
    hooks.set(hook, fn);
    return fn;
  };
}

export const onConnect = register('connect');
export const onEhlo = register('ehlo');
export const onAuth = register('auth');
export const onMail = register('mail');
export const onRcpt = register('rcpt');
export const onData = register('data');
export const onRoute = register('route');
export const onDelivery = register('delivery');
export const onOutbound = register('outbound');

// ---- verdicts --------------------------------------------------------------------------------

export const cont = () => ({ tag: 'continue' });
export const accept = () => ({ tag: 'accept' });
const reply = (code, enhanced, text) => ({ code, enhanced, text });
export const reject = (code = 550, enhanced = '5.7.1', text = 'Refused by policy') =>
  ({ tag: 'reject', val: reply(code, enhanced, text) });
export const tempfail = (code = 451, enhanced = '4.7.1', text = 'Try again later') =>
  ({ tag: 'tempfail', val: reply(code, enhanced, text) });
export const disconnect = (code = 421, enhanced = '4.7.0', text = 'Closing connection') =>
  ({ tag: 'disconnect', val: reply(code, enhanced, text) });
export const discard = () => ({ tag: 'discard' });
export const quarantine = (why) => ({ tag: 'quarantine', val: why });

/** Modifications a data hook returns with its verdict: `return [verdict, changes]`. */
export class Changes {
  constructor() { this.items = []; }
  addHeader(name, value) { this.items.push({ tag: 'add-header', val: { name, value } }); return this; }
  insertHeader(name, value) { this.items.push({ tag: 'insert-header', val: { name, value } }); return this; }
  replaceHeader(name, value) { this.items.push({ tag: 'replace-header', val: { name, value } }); return this; }
  removeHeader(name) { this.items.push({ tag: 'remove-header', val: name }); return this; }
  addRecipient(address) { this.items.push({ tag: 'add-recipient', val: address }); return this; }
  removeRecipient(address) { this.items.push({ tag: 'remove-recipient', val: address }); return this; }
  changeReversePath(address) { this.items.push({ tag: 'change-reverse-path', val: address }); return this; }
}

// ---- host imports ----------------------------------------------------------------------------

function need(name) {
  const iface = host[name];
  if (!iface) throw new Error(`this plugin was built without the \`${name}\` import`);
  return iface;
}

/** Logs through the host ('trace' ... 'error'); a no-op when the plugin does not import `log`. */
export function log(level, message) {
  if (host.log) host.log.log(level, String(message));
}

/** A value of the plugin's `config` table by dotted key, unwrapped; `fallback` when absent. */
export function config(key, fallback = undefined) {
  const value = need('config').get(key);
  if (value === undefined || value === null) return fallback;
  if (value.tag === 'integer') return Number(value.val);
  return value.val;
}

export const kv = {
  get: (key) => need('kv').get(key),
  put: (key, value, ttlMs) => need('kv').put(key, value, ttlMs === undefined ? undefined : BigInt(ttlMs)),
  increment: (key, delta = 1, ttlMs) =>
    Number(need('kv').increment(key, BigInt(delta), ttlMs === undefined ? undefined : BigInt(ttlMs))),
  delete: (key) => need('kv').delete(key),
};

export const nowMs = () => Number(need('clock').nowMs());
export const dns = () => need('dns');

/** The domain of an address ("" when it has none), lower-cased. */
export function domainOf(address) {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

// ---- glue used by the entry module build.mjs generates -----------------------------------------

export function __bind(imports) {
  host = imports;
}

const verdictOr = (v) => (v === undefined || v === null ? cont() : v);

export function __export(hook) {
  const fn = hooks.get(hook);
  if (!fn) throw new Error(`mailwit-plugin.json exports \`${hook}\` but no on${hook[0].toUpperCase()}${hook.slice(1)} function was registered`);
  switch (hook) {
    case 'connect': return { onConnect: (s) => verdictOr(fn(s)) };
    case 'ehlo': return { onEhlo: (s, name) => verdictOr(fn(s, name)) };
    case 'auth': return { check: (s, c) => fn(s, c) ?? { tag: 'unknown' } };
    case 'mail': return { onMail: (s, from) => verdictOr(fn(s, from)) };
    case 'rcpt': return {
      onRcpt: (s, from, to) => {
        const r = fn(s, from, to);
        if (Array.isArray(r)) return { verdict: verdictOr(r[0]), rewrite: r[1] ?? undefined };
        return { verdict: verdictOr(r), rewrite: undefined };
      },
    };
    case 'data': return {
      // Contract 0.2 passes the authentication results too; plugins may ignore them.
      onData: (s, envelope, message, authentication) => {
        const r = fn(s, envelope, message, authentication);
        if (Array.isArray(r)) return { verdict: verdictOr(r[0]), modifications: r[1] ? r[1].items : [] };
        return { verdict: verdictOr(r), modifications: [] };
      },
    };
    case 'route': return { onRoute: (from, to) => fn(from, to) ?? { tag: 'continue' } };
    case 'delivery': return { onDelivery: (event) => { fn(event); } };
    case 'outbound': return {
      onOutbound: (attempt, message) => {
        const r = fn(attempt, message);
        const [action, changes] = Array.isArray(r) ? r : [r, undefined];
        const headers = (changes ? changes.items : []).map((m) => {
          if (m.tag === 'add-header' || m.tag === 'insert-header') return { tag: 'add', val: m.val };
          if (m.tag === 'replace-header') return { tag: 'replace', val: m.val };
          if (m.tag === 'remove-header') return { tag: 'remove', val: m.val };
          throw new Error(`an outbound hook can only edit headers, not ${m.tag}`);
        });
        return { action: action ?? { tag: 'proceed' }, headers };
      },
    };
    default: throw new Error(`unknown hook ${hook}`);
  }
}
