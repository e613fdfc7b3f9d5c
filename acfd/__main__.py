from acfd.cli import main

raise SystemExit(main())
