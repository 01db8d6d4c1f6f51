"""The Streamlit viewer, inside the package so that an installed wheel can start it.

- `app.py`: the Streamlit page (UI only; `streamlit run` executes it as a script).
- `support.py`: the viewer's logic without streamlit (path confinement, uploads, planes, windows,
  metric tables), unit-tested.
- `launch.py`: `denoise view`, which execs `streamlit run app.py`.

``apps/viewer.py`` in a source checkout is a thin entry that runs the same page.
"""
