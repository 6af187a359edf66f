from rlmcli.entry import main

main()
