"""mailwit plugin SDK for Python (componentize-py).

A plugin is a module that registers hook functions with the decorators below; `build.sh` turns it
into a WebAssembly component that exports exactly those hooks and imports exactly the host
interfaces listed in its `mailwit-plugin.toml`.

    import mailwit
    from mailwit import reject

    @mailwit.on_mail
    def mail(session, reverse_path):
        if reverse_path.address.endswith("@spam.test"):
            return reject(550, "5.7.1", "Go away")
        # returning None means `continue`

Hook functions get the generated WIT records (`session.client_ip`, `envelope.recipients[0].address`,
`message.header("Subject")` ...) and return a verdict built here (or None for `continue`).

Host calls (config, log, kv, dns, clock) are only possible while a hook runs, not while the module
is imported: the module is imported once at build time and snapshotted into the component.
"""

from typing import Callable, Dict, List, Optional, Tuple

from wit_world.imports import types as _types

# Host imports the plugin may not have asked for: each is present only when granted at build time.
try:
    from wit_world.imports import log as _log
except ImportError:  # pragma: no cover - depends on the plugin's world
    _log = None
try:
    from wit_world.imports import config as _config
except ImportError:  # pragma: no cover
    _config = None
try:
    from wit_world.imports import kv as _kv
except ImportError:  # pragma: no cover
    _kv = None
try:
    from wit_world.imports import dns as _dns
except ImportError:  # pragma: no cover
    _dns = None
try:
    from wit_world.imports import clock as _clock
except ImportError:  # pragma: no cover
    _clock = None

import tomllib

Reply = _types.Reply
Verdict = _types.Verdict

# ---------------------------------------------------------------------------------------------
# Hook registration

HOOKS = ("connect", "ehlo", "auth", "mail", "rcpt", "data", "route", "delivery", "outbound")
_registered: Dict[str, Callable] = {}


def _register(hook: str) -> Callable[[Callable], Callable]:
    def decorator(fn: Callable) -> Callable:
        if hook in _registered:
            raise ValueError(f"a function is already registered for the {hook} hook")
        _registered[hook] = fn
        return fn

    return decorator


on_connect = _register("connect")
on_ehlo = _register("ehlo")
on_auth = _register("auth")
on_mail = _register("mail")
on_rcpt = _register("rcpt")
on_data = _register("data")
on_route = _register("route")
on_delivery = _register("delivery")
on_outbound = _register("outbound")


def registered(hook: str) -> Optional[Callable]:
    return _registered.get(hook)


# ---------------------------------------------------------------------------------------------
# Verdicts


def cont() -> Verdict:
    """No opinion: the next plugin (or the core) decides."""
    return _types.Verdict_Continue()


def accept() -> Verdict:
    return _types.Verdict_Accept()


def reject(code: int = 550, enhanced: str = "5.7.1", text: str = "Refused by policy") -> Verdict:
    return _types.Verdict_Reject(Reply(code, enhanced, text))


def tempfail(code: int = 451, enhanced: str = "4.7.1", text: str = "Try again later") -> Verdict:
    return _types.Verdict_Tempfail(Reply(code, enhanced, text))


def disconnect(code: int = 421, enhanced: str = "4.7.0", text: str = "Closing connection") -> Verdict:
    return _types.Verdict_Disconnect(Reply(code, enhanced, text))


def discard() -> Verdict:
    return _types.Verdict_Discard()


def quarantine(why: str) -> Verdict:
    return _types.Verdict_Quarantine(why)


class Changes:
    """Modifications a data hook returns with its verdict: `return verdict, changes`."""

    def __init__(self) -> None:
        self.items: List[Tuple[str, object]] = []

    def add_header(self, name: str, value: str) -> "Changes":
        self.items.append(("add-header", (name, value)))
        return self

    def insert_header(self, name: str, value: str) -> "Changes":
        self.items.append(("insert-header", (name, value)))
        return self

    def replace_header(self, name: str, value: str) -> "Changes":
        self.items.append(("replace-header", (name, value)))
        return self

    def remove_header(self, name: str) -> "Changes":
        self.items.append(("remove-header", name))
        return self

    def add_recipient(self, address: str) -> "Changes":
        self.items.append(("add-recipient", address))
        return self

    def remove_recipient(self, address: str) -> "Changes":
        self.items.append(("remove-recipient", address))
        return self

    def change_reverse_path(self, address: str) -> "Changes":
        self.items.append(("change-reverse-path", address))
        return self

    def __len__(self) -> int:
        return len(self.items)


# ---------------------------------------------------------------------------------------------
# Host imports

_config_cache: Optional[dict] = None


def config() -> dict:
    """The plugin's `config` table from the server's TOML file, parsed once per instance."""
    global _config_cache
    if _config is None:
        raise RuntimeError("this plugin was built without the `config` import")
    if _config_cache is None:
        _config_cache = tomllib.loads(_config.all())
    return _config_cache


def log(level: str, message: str) -> None:
    """Log through the host ("trace", "debug", "info", "warn", "error"); a no-op without `log`."""
    if _log is None:
        return
    _log.log(_log.Level[level.upper()], message)


def kv_get(key: str) -> Optional[bytes]:
    if _kv is None:
        raise RuntimeError("this plugin was built without the `kv` import")
    return _kv.get(key)


def kv_put(key: str, value: bytes, ttl_ms: Optional[int] = None) -> None:
    if _kv is None:
        raise RuntimeError("this plugin was built without the `kv` import")
    _kv.put(key, value, ttl_ms)


def kv_increment(key: str, delta: int = 1, ttl_ms: Optional[int] = None) -> int:
    if _kv is None:
        raise RuntimeError("this plugin was built without the `kv` import")
    return _kv.increment(key, delta, ttl_ms)


def now_ms() -> int:
    if _clock is None:
        raise RuntimeError("this plugin was built without the `clock` import")
    return _clock.now_ms()


def dns():
    """The generated `dns` module (lookup_a, lookup_mx, lookup_txt ...)."""
    if _dns is None:
        raise RuntimeError("this plugin was built without the `dns` import")
    return _dns


# ---------------------------------------------------------------------------------------------
# Message helpers


def body(message, limit: int = 1 << 20) -> bytes:
    """The message body (after the header), at most `limit` octets, read in host-sized chunks."""
    offset = message.body_offset()
    end = min(message.size(), offset + limit)
    parts = []
    while offset < end:
        chunk = message.read(offset, min(65536, end - offset))
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)
