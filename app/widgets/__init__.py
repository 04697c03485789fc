"""The main screen's widgets, one per module: stats bar, alerts banner, job table, audit panel."""
