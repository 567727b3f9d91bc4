from netplane.cli import main

raise SystemExit(main())
