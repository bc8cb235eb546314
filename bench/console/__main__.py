from bench.console.run import main

raise SystemExit(main())
