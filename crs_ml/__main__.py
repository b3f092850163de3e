from crs_ml.cli import main

main()
