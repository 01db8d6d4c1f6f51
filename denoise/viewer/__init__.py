"""The Streamlit viewer, inside the package so that an installed wheel can start it.

- `app.py`: the Streamlit page (UI only; `streamlit run` executes it as a script); `insight.py`:
  its VAE/sparse/anomaly tabs.
- `support.py`: the viewer's logic without streamlit (path confinement, uploads, planes, windows,
  metric tables), unit-tested.
- `compare.py`: residual and error maps in a diverging colour map centred at 0, colour bars in the
  scan's units, which method is best per metric and how the metric chart is ordered (no streamlit).
- `advice.py`: the CLI's warnings for the viewer (non-HU CT, a model of the other modality, noise
  outside a model's training range) and the sidebar's state rules (no streamlit).
- `launch.py`: `denoise view`, which execs `streamlit run app.py`.

``apps/viewer.py`` in a source checkout is a thin entry that runs the same page.
"""
