"""The measuring tools behind the ``cs231n`` commands: the manual-vs-built-in benchmark (:mod:`.bench`),
gradient checks (:mod:`.gradcheck`), model summaries (:mod:`.summary`) and saved-memory counting
(:mod:`.memory`), manual-op coverage (:mod:`.manual_coverage`), plots (:mod:`.plotting`) and the commands'
shared output options (:mod:`.command`)."""
