from histoloop.cli.main import main

main()
