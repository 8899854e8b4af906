from faceid_sdk.cli import main

main()
