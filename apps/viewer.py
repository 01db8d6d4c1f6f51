"""denoise viewer (research use only): a thin entry for ``streamlit run apps/viewer.py -- --data-root DIR``.

The page lives in the package (`denoise.viewer.app`) so that ``denoise view`` works from an
installed wheel as well as from this checkout.
"""

from denoise.viewer.app import main

main()
