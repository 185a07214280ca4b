from service.bench.cli import main

raise SystemExit(main())
