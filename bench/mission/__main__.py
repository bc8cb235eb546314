from bench.mission.run import main

raise SystemExit(main())
