"""A content rule set: regular expressions over the subject, any header or the body.

    [plugins.rules]
    path = "content_rules.wasm"
    grants = ["log", "config"]
    limits = { memory_mib = 128 }
    [plugins.rules.config]
    tag_header = "X-Content-Rules"      # header listing the `tag` rules that matched
    body_limit = 262144                 # octets of body scanned
    [[plugins.rules.config.rules]]
    name = "pharma"
    field = "body"                      # "subject", "body", or "header:NAME"
    pattern = "(?i)\\bv[i1]agra\\b"
    action = "reject"                   # reject | tempfail | quarantine | tag
    text = "Message looks like spam"    # reply text for reject / tempfail (optional)

Rules run in order; the first reject / tempfail / quarantine decides; every matching `tag` rule
is named in the tag header. Patterns are compiled once per instance (on its first message).
"""

import re

import mailwit
from mailwit import Changes, cont, quarantine, reject, tempfail

_rules = None


class Rule:
    def __init__(self, table: dict) -> None:
        self.name = str(table.get("name", "rule"))
        self.field = str(table.get("field", "body")).lower()
        self.action = str(table.get("action", "tag"))
        if self.action not in ("reject", "tempfail", "quarantine", "tag"):
            raise ValueError(f"rule {self.name}: unknown action {self.action!r}")
        self.text = str(table.get("text", f"Refused by content rule {self.name}"))
        self.pattern = re.compile(str(table["pattern"]))


def rules() -> list:
    global _rules
    if _rules is None:
        _rules = [Rule(t) for t in mailwit.config().get("rules", [])]
        mailwit.log("debug", f"content rules: {len(_rules)} compiled")
    return _rules


def field_text(rule: Rule, message, cache: dict) -> str:
    if rule.field not in cache:
        if rule.field == "body":
            limit = int(mailwit.config().get("body_limit", 256 * 1024))
            cache["body"] = mailwit.body(message, limit).decode("utf-8", "replace")
        elif rule.field == "subject":
            cache["subject"] = message.header("Subject") or ""
        elif rule.field.startswith("header:"):
            cache[rule.field] = message.header(rule.field[len("header:"):]) or ""
        else:
            raise ValueError(f"rule {rule.name}: unknown field {rule.field!r}")
    return cache[rule.field]


@mailwit.on_data
def check(session, envelope, message):
    tags = []
    cache = {}
    for rule in rules():
        if not rule.pattern.search(field_text(rule, message, cache)):
            continue
        mailwit.log("info", f"content rule {rule.name} matched ({rule.action}) in session {session.id}")
        if rule.action == "reject":
            return reject(554, "5.7.1", rule.text)
        if rule.action == "tempfail":
            return tempfail(451, "4.7.1", rule.text)
        if rule.action == "quarantine":
            return quarantine(f"content rule {rule.name}")
        tags.append(rule.name)
    if not tags:
        return cont()
    header = str(mailwit.config().get("tag_header", "X-Content-Rules"))
    return cont(), Changes().add_header(header, ", ".join(tags))
