from bench.upload.run import main

raise SystemExit(main())
