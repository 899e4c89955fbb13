"""Other tools' formats: AutoTrain Advanced configs and command lines (autotrain)."""
