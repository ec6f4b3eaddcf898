@echo off
rem console.bat - step-by-step control of ossimport (standalone mode).
rem
rem   console.bat {submit|clean|start|stop|stat|retry|check|version|worker}
rem
rem Runs from the folder that holds this script (the package root, with conf\),
rem so it works from any current directory. Output and exit code are those of
rem the ossimport binary: 0 ok, 1 some files failed, 2 usage/config error.
setlocal EnableDelayedExpansion
cd /d "%~dp0"

set "ARG=%~1"
set "ARG2=%~2"
set "ARG3=%~3"
set "ARG4=%~4"
set "WORD="
if not defined ARG goto usage_error
for %%W in (submit clean start stop stat retry check version sandbox worker) do if /i "!ARG!"=="%%W" set "WORD=%%W"
if /i "!ARG!"=="help" goto usage_ok
if /i "!ARG!"=="-h" goto usage_ok
if /i "!ARG!"=="--help" goto usage_ok
if not defined WORD goto unknown_word
rem sandbox --ensure / --stop is an internal helper used by import.bat.
if "!WORD!"=="sandbox" goto find_binary
rem Distributed mode: worker [--host-name NAME] joins the queue in the foreground.
if "!WORD!"=="worker" goto find_binary
if "!WORD!"=="stat" goto stat_args
if "!WORD!"=="submit" goto submit_args
if defined ARG2 goto extra_args
goto find_binary

rem The original's one word, plus ours: stat --json or stat --watch
:stat_args
if defined ARG3 goto stat_bad
if not defined ARG2 goto find_binary
if "!ARG2!"=="--json" goto find_binary
if "!ARG2!"=="--watch" goto find_binary
:stat_bad
>&2 echo Error: stat takes no option but --json or --watch.
exit /b 2

rem The original's one word, plus ours: submit --dry-run [--json]
:submit_args
if defined ARG4 goto submit_bad
if not defined ARG2 goto find_binary
if "!ARG2! !ARG3!"=="--dry-run " goto find_binary
if "!ARG2! !ARG3!"=="--dry-run --json" goto find_binary
if "!ARG2! !ARG3!"=="--json --dry-run" goto find_binary
:submit_bad
>&2 echo Error: submit takes no option but --dry-run (and --json with it).
exit /b 2

:find_binary
rem A packaged bin\ossimport.exe is used as is. In a source checkout with cargo,
rem cargo build --release runs first, so sources newer than the binary (after a
rem git pull) are never run stale; quiet, and a no-op when nothing changed.
rem Without cargo, or with OSSIMPORT_NO_BUILD=1 (import.bat sets it once it has
rem built), the binary built earlier is used. CARGO_TARGET_DIR is honoured.
set "BIN="
set "TDIR=target"
if defined CARGO_TARGET_DIR set "TDIR=!CARGO_TARGET_DIR!"
if exist "bin\ossimport.exe" set "BIN=bin\ossimport.exe"
if defined BIN goto run
if not exist "Cargo.toml" goto use_built
if defined OSSIMPORT_NO_BUILD goto use_built
where cargo >nul 2>nul
if errorlevel 1 goto use_built
if exist "!TDIR!\release\ossimport.exe" goto rebuild
>&2 echo Building ossimport (first run, this takes several minutes)...
call cargo build --release 1>&2
if errorlevel 1 goto build_failed
goto built
:rebuild
call cargo build --release --quiet 1>&2
if errorlevel 1 goto build_failed
:built
if exist "!TDIR!\release\ossimport.exe" set "BIN=!TDIR!\release\ossimport.exe"
if defined BIN goto run
>&2 echo Error: cargo build --release finished but !TDIR!\release\ossimport.exe is missing.
exit /b 2

:use_built
if exist "!TDIR!\release\ossimport.exe" set "BIN=!TDIR!\release\ossimport.exe"
if defined BIN goto run
if not exist "Cargo.toml" goto not_found
goto no_cargo

:run
"!BIN!" !WORD! !ARG2! !ARG3!
exit /b !ERRORLEVEL!

:not_found
>&2 echo Error: ossimport binary not found: expected bin\ossimport.exe or target\release\ossimport.exe
exit /b 2

:no_cargo
>&2 echo Error: ossimport binary not found and cargo is not installed to build it
>&2 echo        (install Rust from https://rustup.rs, or use a packaged release with bin\ossimport.exe).
exit /b 2

:build_failed
>&2 echo Error: building ossimport failed (cargo build --release); see the messages above.
exit /b 2

:unknown_word
>&2 echo Error: unknown command: !ARG!
goto usage_error

:extra_args
>&2 echo Error: console.bat takes exactly one word.
goto usage_error

:usage_ok
call :usage
exit /b 0

:usage_error
call :usage 1>&2
exit /b 2

:usage
echo Usage: console.bat {submit^|clean^|start^|stop^|stat^|retry^|check^|version^|worker}
echo   submit   submit the job described in conf\local_job.cfg (job:local_test)
echo            submit --dry-run: list and split the source as the job would and print
echo            tasks, files and bytes, what importSince leaves out, invalid keys and (with
echo            isSkipExistFile) what is already there; writes nothing; --json for scripts
echo   clean    delete the job's state so it can be submitted again (service must be stopped)
echo   start    start the import service (master, worker, tracker) in the background;
echo            log in logs\ossimport2.log
echo   stop     stop the import service
echo   stat     print the job's status (JobState:Running^|Succeed^|Failed^|Abort^|Stopped)
echo            stat --json: one JSON document; stat --watch: follow the job until it ends
echo   retry    run the failed tasks again (only the failed files are redone)
echo   check    check the destination, keys, bucket, clock, source and working folder
echo            before a long run (one line each, OK/WARN/FAIL; exit 1 on a FAIL)
echo   version  print the version
echo   worker   distributed mode: join the queue of conf\sys.properties' queueUrl and run
echo            the master's tasks in the foreground; --host-name NAME
exit /b 0
