from pgrun.cli import main

raise SystemExit(main())
