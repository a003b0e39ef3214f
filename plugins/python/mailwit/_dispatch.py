"""The export classes componentize-py looks for (`Mail`, `Data` ...), each calling the function
the plugin registered for that hook and turning its return value into the WIT result.

`build.py` generates the app module: it imports the plugin module (which registers its hooks)
and then `export(hook)` for each hook in the plugin's `mailwit-plugin.toml`, at build time, so every
module a hook needs is in the snapshot.
"""

import importlib
import inspect

import mailwit
from wit_world.imports import types as _types


def _verdict(value):
    return mailwit.cont() if value is None else value


def _function(hook):
    fn = mailwit.registered(hook)
    if fn is None:
        raise RuntimeError(f"mailwit-plugin.toml exports `{hook}` but no @mailwit.on_{hook} function was registered")
    return fn


def _takes(fn, n):
    """Whether `fn` accepts `n` positional arguments (contract 0.2 added some)."""
    try:
        inspect.signature(fn).bind(*range(n))
        return True
    except TypeError:
        return False


def export(hook):
    """The export class for `hook`, bound to the registered function."""
    fn = _function(hook)
    wit = importlib.import_module(f"wit_world.exports.{hook}")

    if hook == "connect":
        class Connect:
            def on_connect(self, session):
                return _verdict(fn(session))
        return Connect

    if hook == "ehlo":
        class Ehlo:
            def on_ehlo(self, session, name):
                return _verdict(fn(session, name))
        return Ehlo

    if hook == "auth":
        class Auth:
            def check(self, session, credentials):
                result = fn(session, credentials)
                return wit.AuthResult_Unknown() if result is None else result
        return Auth

    if hook == "mail":
        class Mail:
            def on_mail(self, session, reverse_path):
                return _verdict(fn(session, reverse_path))
        return Mail

    if hook == "rcpt":
        class Rcpt:
            def on_rcpt(self, session, reverse_path, recipient):
                result = fn(session, reverse_path, recipient)
                rewrite = None
                if isinstance(result, tuple):
                    result, rewrite = result
                return wit.RcptResult(_verdict(result), rewrite)
        return Rcpt

    if hook == "data":
        # 0.1 defines header-field in `data`, 0.2 in `types`.
        HeaderField = getattr(wit, "HeaderField", None) or _types.HeaderField

        def modification(kind, value):
            if kind == "add-header":
                return wit.Modification_AddHeader(HeaderField(*value))
            if kind == "insert-header":
                return wit.Modification_InsertHeader(HeaderField(*value))
            if kind == "replace-header":
                return wit.Modification_ReplaceHeader(HeaderField(*value))
            if kind == "remove-header":
                return wit.Modification_RemoveHeader(value)
            if kind == "add-recipient":
                return wit.Modification_AddRecipient(value)
            if kind == "remove-recipient":
                return wit.Modification_RemoveRecipient(value)
            if kind == "change-reverse-path":
                return wit.Modification_ChangeReversePath(value)
            raise ValueError(kind)

        with_auth = _takes(fn, 4)

        class Data:
            def on_data(self, session, envelope, message, *authentication):
                # Contract 0.2 passes the authentication results; plugins may ignore them.
                if with_auth and authentication:
                    result = fn(session, envelope, message, authentication[0])
                else:
                    result = fn(session, envelope, message)
                changes = None
                if isinstance(result, tuple):
                    result, changes = result
                mods = [modification(k, v) for k, v in changes.items] if changes else []
                return wit.DataResult(_verdict(result), mods)
        return Data

    if hook == "route":
        class Route:
            def on_route(self, reverse_path, recipient):
                decision = fn(reverse_path, recipient)
                return wit.RouteDecision_Continue() if decision is None else decision
        return Route

    if hook == "delivery":
        class Delivery:
            def on_delivery(self, event):
                fn(event)
        return Delivery

    if hook == "outbound":
        def edit(kind, value):
            if kind in ("add-header", "insert-header"):
                return wit.HeaderEdit_Add(_types.HeaderField(*value))
            if kind == "replace-header":
                return wit.HeaderEdit_Replace(_types.HeaderField(*value))
            if kind == "remove-header":
                return wit.HeaderEdit_Remove(value)
            raise ValueError(f"an outbound hook can only edit headers, not {kind}")

        class Outbound:
            def on_outbound(self, attempt, message):
                result = fn(attempt, message)
                changes = None
                if isinstance(result, tuple):
                    result, changes = result
                action = wit.OutboundAction_Proceed() if result is None else result
                edits = [edit(k, v) for k, v in changes.items] if changes else []
                return wit.OutboundResult(action, edits)
        return Outbound

    raise ValueError(f"unknown hook `{hook}` (known: {', '.join(mailwit.HOOKS)})")
