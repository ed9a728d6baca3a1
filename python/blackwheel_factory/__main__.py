from blackwheel_factory.cli import main

raise SystemExit(main())
