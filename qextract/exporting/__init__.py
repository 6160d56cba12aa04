"""Exporting: an extraction laid out (:mod:`qextract.layouts`) and written (:mod:`qextract.writers`)
into a folder with a manifest, all or nothing (``exporter``)."""
