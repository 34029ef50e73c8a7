"""How a node's power is driven: one interface (:mod:`.base`), one module per driver (``cmc``, ``ipmi``),
each with its line in :data:`imaging.registry.POWER`; :mod:`.reset` writes ``ensure_reset`` once above them,
and :class:`.base.Power` gives each node of a command run the driver its config names."""
