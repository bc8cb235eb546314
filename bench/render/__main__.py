from bench.render.run import main

raise SystemExit(main())
