from rlmcli.cli import main

main()
