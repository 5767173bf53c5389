"""The project document's own marks, outside its clips: when the copy sweep, the attempts
reconciler and the settle sweep are due, what has a copy given up on, which settlements the
ledger made and which are owed."""

from __future__ import annotations

#: the earliest success whose video the copy sweep has not seen stored yet (set by every
#: success, ``$min``; moved on by each sweep's claim, unset once nothing is left to copy)
COPY_DUE = "copy_due_at"
#: a lower bound of the lease ends of the project's open attempts (tasks an earlier task's
#: video replaced, still followed): the reconciler's index for them (``attempts_due``)
ATTEMPTS_DUE = "attempts_due_at"

#: what of the project has a copy given up on (``reelflow-admin assets list --failed``): the
#: scene index of a clip's video, the task UUID of an attempt's
ASSET_FAILURES = "asset_failures"

#: the keys (``<charge id>:<task>``, ``…:late``) of the settlements the tenant's ledger applied
#: for the project's clips, each added once the ledger's ``$inc`` did (or had) applied: a
#: duplicate of a clip's end settles none of them again, however late it comes
SETTLED = "settled"

#: the earliest end, written by a writer no message stands behind (a reconciler's pass, the
#: api's cancel), whose settlement the settle sweep has not seen made (``$min``; moved on by
#: each sweep's claim, unset with :data:`SETTLE_OWED` once the sweep made them all)
SETTLE_DUE = "settle_due_at"
#: those ends' settlements, ``<scene index>:<key on the ledger>`` each (``<charge id>:<task>``
#: or ``…:<task>:late``: the charge named, so an end of the same task under another charge
#: is never taken for it): what the sweep settles if the ledger's ``$inc`` never came
SETTLE_OWED = "settle_owed"
