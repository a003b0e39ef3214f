"""Test plugin: behaviour at MAIL chosen by the config key `mail`; used by the host's tests of
Python plugins (containment, instance reuse, WASI capabilities).

Modes: continue | loop (spin forever) | alloc (allocate without bound) | raise (an exception) |
state (refuse with the per-instance call count, "calls=N") | time (refuse with time.time()) |
random (refuse with os.urandom(8) in hex) | files (refuse naming what reading / listing files gave) |
env (refuse with the environment's size).
The data hook adds `X-Py-Chaos: <tag>`; connect, ehlo and rcpt have no opinion (for the
five-hook session of the language benchmark).
"""

import os
import time

import mailwit
from mailwit import Changes, cont, reject

calls = 0


@mailwit.on_connect
def connect(session):
    return None


@mailwit.on_ehlo
def ehlo(session, name):
    return None


@mailwit.on_rcpt
def rcpt(session, reverse_path, recipient):
    return None


@mailwit.on_mail
def mail(session, reverse_path):
    global calls
    calls += 1
    mode = mailwit.config().get("mail", "continue")
    if mode == "loop":
        n = 0
        while True:
            n += 1
    if mode == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if mode == "raise":
        raise ValueError("py-chaos raised in mail")
    if mode == "state":
        return reject(550, "5.7.1", f"calls={calls}")
    if mode == "time":
        return reject(550, "5.7.1", f"time={int(time.time())}")
    if mode == "random":
        return reject(550, "5.7.1", f"random={os.urandom(8).hex()}")
    if mode == "files":
        found = []
        for path in ("/etc/passwd", "/", "."):
            try:
                if path.endswith("passwd"):
                    with open(path) as f:
                        found.append(f"read:{len(f.read())}")
                else:
                    found.append(f"list:{len(os.listdir(path))}")
            except OSError as e:
                found.append(f"denied:{e.errno}")
        return reject(550, "5.7.1", "files=" + ",".join(found))
    if mode == "env":
        return reject(550, "5.7.1", f"env={len(os.environ)}")
    return cont()


@mailwit.on_data
def data(session, envelope, message):
    tag = mailwit.config().get("tag", "py")
    return cont(), Changes().add_header("X-Py-Chaos", tag)
