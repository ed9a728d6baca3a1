from blackwheel.build.cli import main

raise SystemExit(main())
