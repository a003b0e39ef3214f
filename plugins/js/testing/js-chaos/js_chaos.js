// Test plugin: behaviour at MAIL chosen by the config key `mail`; used by the host's tests of
// JavaScript plugins (containment, instance reuse, WASI capabilities).
//
// Modes: continue | loop | alloc | throw | state ("calls=N" per instance) | time (Date.now()) |
// random (Math.random()). The data hook adds `X-Js-Chaos: <tag>`; connect, ehlo and rcpt have no
// opinion (for the five-hook session of the language benchmark).

import { onConnect, onEhlo, onMail, onRcpt, onData, reject, cont, config, Changes } from './mailwit.js';

onConnect(() => undefined);
onEhlo(() => undefined);
onRcpt(() => undefined);

let calls = 0;

onMail((session, reversePath) => {
  calls += 1;
  const mode = config('mail', 'continue');
  if (mode === 'loop') { for (;;) { calls += 0; } }
  if (mode === 'alloc') {
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
  }
  if (mode === 'throw') throw new Error('js-chaos threw in mail');
  if (mode === 'state') return reject(550, '5.7.1', `calls=${calls}`);
  if (mode === 'time') return reject(550, '5.7.1', `time=${Math.floor(Date.now() / 1000)}`);
  if (mode === 'random') return reject(550, '5.7.1', `random=${Math.random()}`);
  return cont();
});

onData((session, envelope, message) => [cont(), new Changes().addHeader('X-Js-Chaos', config('tag', 'js'))]);
