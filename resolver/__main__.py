from resolver.launch import main

raise SystemExit(main())
