from tally.sampler.service import main

raise SystemExit(main())
