from bench.sound.run import main

raise SystemExit(main())
