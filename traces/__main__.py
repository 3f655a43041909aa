"""``python -m tally.traces``: run one trace writer (see ``tally.traces.service``)."""

from tally.traces.service import main

main()
