"""Every change of a project document, as a pure builder of ONE guarded update. No I/O.

A builder returns a :class:`~reelflow_common.store.transitions.write.Write`: the filter
(the project, plus the guard on the clip's state that makes the change happen at most
once), the update (the clip's new fields, the move between count buckets, ``seq`` and the
events that go with it) and how many events it pushes. :mod:`reelflow_common.store.writes`
applies it with one ``find_one_and_update``; a filter that matches nothing means the change
was made already, or can no longer be made, and nothing is written.

Nothing here needs a read first, except the API's rare operations (cancel, retry) and the
repair of a late result, which are built from a clip as read and guarded on exactly what
was read. Every transition's allowed from-states share one count bucket, so the counts it
moves are known without reading them.

One module per kind of change, each called by its store part as ``<module>.<builder>``:

- :mod:`.write`: :class:`~.write.Write`, and the update under construction every builder makes
- :mod:`.markers`: the project's own marks (the sweeps' and reconcilers' due markers,
  copies given up on, settlements made and owed)
- :mod:`.charges`: where a clip's reservations are, and what a task's recorded end settles
- :mod:`.clipmoves`: the hot path, a chain moves its clip; the project's finish
- :mod:`.chainleases`: a chain's lease renewed, or run out for the reconciler
- :mod:`.follows`: a task in ``attempts``, and the chain that follows it
- :mod:`.lateresults`: a result of a task the clip does not stand for (any more)
- :mod:`.videotaken`: a clip takes another of its tasks' video
- :mod:`.cancellation`, :mod:`.retries`: the api's cancel and retry of a clip
- :mod:`.reconciler`: the reconcilers' claims, re-arms and stray attempts
- :mod:`.videocopies`: reelflow's copies of the videos, and the copy sweep's claim
- :mod:`.owing`: the settlements the project records as made, and as owed

A package rather than modules beside the store's parts: those parts (``cancel.py``,
``retry.py``, ``copies.py``, ``leases.py``, ``reconcile.py``, ``settle.py``, ``owed.py``)
are the I/O of the same roles, and the pure builders keep their own names, apart from them.
Nothing is re-exported here: each name is imported from its module.
"""
