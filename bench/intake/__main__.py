from bench.intake.run import main

raise SystemExit(main())
