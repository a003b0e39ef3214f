// Sender policy: who may send, and to how many.
//
//   [plugins.senders]
//   path = "sender_policy.wasm"
//   grants = ["log", "config"]
//   limits = { memory_mib = 64 }
//   [plugins.senders.config]
//   blocked_domains = ["spam.test"]      # MAIL FROM these domains (and subdomains): 550 5.7.1
//   local_domains = ["example.test"]     # unauthenticated MAIL FROM a local domain: 550 5.7.26
//   max_recipients = 50                  # per transaction; more: 452 4.5.3
//   null_sender_max_recipients = 1       # bounces (<>) go to one recipient
//
// One instance serves one session, so the per-transaction count lives in the module.

import { onMail, onRcpt, reject, tempfail, config, log, domainOf } from './mailwit.js';

let recipients = 0;
let nullSender = false;

function inDomains(domain, list) {
  return list.some((d) => domain === d || domain.endsWith('.' + d));
}

onMail((session, reversePath) => {
  recipients = 0;
  nullSender = reversePath.address === '';
  const domain = domainOf(reversePath.address);
  if (domain && inDomains(domain, config('blocked_domains', []))) {
    log('info', `sender domain ${domain} is blocked (session ${session.id})`);
    return reject(550, '5.7.1', `Mail from ${domain} is not accepted here`);
  }
  if (domain && session.authenticated === undefined && inDomains(domain, config('local_domains', []))) {
    log('warn', `unauthenticated sender claims local domain ${domain} from ${session.clientIp}`);
    return reject(550, '5.7.26', 'Authenticate to send as a local address');
  }
});

onRcpt((session, reversePath, recipient) => {
  recipients += 1;
  const max = nullSender ? config('null_sender_max_recipients', 1) : config('max_recipients', 50);
  if (recipients > max) {
    return tempfail(452, '4.5.3', `Too many recipients (at most ${max} per message)`);
  }
});
