"""What results/ is and how it is kept: ``reproduce`` writes it, ``check`` compares a rerun with it, by the
rule of ``compare`` and the per-column tolerances of ``tolerances``."""
