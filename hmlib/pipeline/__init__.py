"""``hmlib run`` in parts: plan (what runs, in which order), cache (reuse keys), execute (one stage's
notebook), publish (staging folder and atomic swap), manifest (what the report was made from).

:func:`hmlib.runner.run_region` composes them.
"""
