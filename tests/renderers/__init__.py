"""Tests of the render backends in ``renderers/``: pure, real-tool and real-HTTP tiers."""
