"""Where a parameter's text came from, which decides whether an `env:`/`file:` value is read as a reference.

Only text written by whoever runs scaler (a runbook default, a trigger rule, the command line) may say where
a secret is. Text rendered from an alert is whatever the alert's sender put there: read as a reference,
`file:/etc/shadow` or `env:AWS_SECRET_ACCESS_KEY` in a label would make the server read that file or
variable and use it (as the URL a notification is posted to, say). So such text is marked `Data` where it
is rendered, and a secret parameter's value becomes a `Ref` only when it starts with `env:`/`file:` and is
not `Data`; only a `Ref` is ever read (scaler.runbook.params).
"""

from __future__ import annotations


class Data(str):
    """Text from outside the config (an alert's labels, annotations or fields, whole or spliced into a rule's
    text): a value, never a reference, whatever it starts with."""

    __slots__ = ()


class Ref(str):
    """An `env:`/`file:` reference of a secret parameter, given by the config or the operator: where the secret
    is. Any str operation on it gives plain text, which is never read, so a lost mark fails closed."""

    __slots__ = ()
