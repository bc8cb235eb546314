from bench.record.run import main

raise SystemExit(main())
