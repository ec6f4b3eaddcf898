@echo off
rem import.bat - one-click import with ossimport (standalone mode).
rem
rem Double-click it, or run import.bat in a Command Prompt.
rem Submits the job in conf\local_job.cfg, starts the import service in the
rem background, prints the job status every OSSIMPORT_STAT_INTERVAL seconds
rem (default 10; also appended to logs\job_stat.log) and asks what to do when
rem tasks fail. When no answer can be read (end of input) each question takes
rem its default: resume the previous job, do not retry failed tasks, stop the
rem service at the end.
rem Exit codes: 0 imported, 1 the service ended without finishing, 2 error or
rem failed tasks left unretried.
setlocal EnableDelayedExpansion
cd /d "%~dp0"

rem Started by a double-click (Explorer runs cmd /c "...\import.bat"): pause
rem before the window closes so the last messages can be read.
set "PAUSE_AT_END="
set "CCL=!cmdcmdline!"
if defined CCL set "CCL2=!CCL:%~nx0=!"
if defined CCL if /i not "!CCL2!"=="!CCL!" set "PAUSE_AT_END=1"

set "RC=0"
set "RESUBMITTED="
if not exist logs mkdir logs
set "OUTF=logs\import_step.tmp"

set "INTERVAL=10"
if defined OSSIMPORT_STAT_INTERVAL set "INTERVAL=!OSSIMPORT_STAT_INTERVAL!"
set "BAD="
for /f "delims=0123456789" %%A in ("!INTERVAL!") do set "BAD=1"
if defined BAD echo [import] OSSIMPORT_STAT_INTERVAL=!INTERVAL! is not a whole number of seconds; using 10.
if defined BAD set "INTERVAL=10"
if !INTERVAL! LSS 1 set "INTERVAL=1"

rem 0. Find (or build, in a source checkout) the binary once, up front; the later
rem    console.bat calls use it without asking cargo again.
call console.bat version
if errorlevel 1 goto no_binary
set "OSSIMPORT_NO_BUILD=1"

rem 1. Local sandbox destination (does nothing unless destDomain is a loopback
rem    http endpoint with nothing listening).
call console.bat sandbox --ensure
set "RC=!ERRORLEVEL!"
if not "!RC!"=="0" goto sandbox_failed

rem 2. Check the destination, keys, bucket, clock, source and working folder before the
rem    long run; a FAIL stops here with its message.
echo [import] Checking before the run (console.bat check)...
call console.bat check
set "RC=!ERRORLEVEL!"
if not "!RC!"=="0" goto check_failed

rem 3. Submit the job.
:submit
echo [import] Submitting the job in conf\local_job.cfg (console.bat submit)...
call console.bat submit > "%OUTF%" 2>&1
set "RC=!ERRORLEVEL!"
type "%OUTF%"
if "!RC!"=="0" goto start_service
findstr /c:"already exists" "%OUTF%" >nul
if errorlevel 1 goto submit_failed
if defined RESUBMITTED goto submit_failed
call :ask_yes_no "Clean the previous job, Yes or No:" no
if "!ASK!"=="no" goto resume
echo [import] Stopping the import service (console.bat stop)...
call console.bat stop
echo [import] Cleaning the previous job (console.bat clean)...
call console.bat clean
if errorlevel 1 goto clean_failed
set "RESUBMITTED=1"
goto submit

:resume
echo [import] Resume the previous job from its checkpoint.

rem 4. Start the service.
:start_service
echo [import] Starting the import service (console.bat start)...
call console.bat start > "%OUTF%" 2>&1
set "RC=!ERRORLEVEL!"
type "%OUTF%"
if "!RC!"=="0" goto watch
findstr /c:"already running" "%OUTF%" >nul
if errorlevel 1 goto start_failed
echo [import] The import service is already running; following its progress.

rem 5. Follow the job.
:watch
echo [import] Printing the job status every !INTERVAL!s (also in logs\job_stat.log); closing this window stops watching, not the service.
set "WAIT=1"
set "MISSES=0"

:watch_loop
call :sleep !WAIT!
set "WAIT=!INTERVAL!"
call console.bat stat > "%OUTF%" 2>&1
type "%OUTF%"
type "%OUTF%" >> "logs\job_stat.log"
findstr /c:"JobState:Succeed" "%OUTF%" >nul
if not errorlevel 1 goto completed
findstr /c:"JobState:Failed" "%OUTF%" >nul
if not errorlevel 1 goto job_failed
findstr /c:"JobState:Abort" "%OUTF%" >nul
if not errorlevel 1 goto service_gone
findstr /c:"JobState:Stopped" "%OUTF%" >nul
if not errorlevel 1 goto service_gone
findstr /c:"JobState:" "%OUTF%" >nul
if not errorlevel 1 set "MISSES=0"
if not errorlevel 1 goto watch_loop
set /a MISSES+=1
if !MISSES! GEQ 30 goto no_status
goto watch_loop

:job_failed
set "MISSES=0"
call :ask_yes_no "Retry the failed tasks, Yes or No:" no
if "!ASK!"=="no" goto failed_left
echo [import] Retrying the failed tasks (console.bat retry)...
call console.bat retry
set "RC=!ERRORLEVEL!"
if not "!RC!"=="0" goto retry_failed
goto watch_loop

rem 6. Done.
:completed
echo Import to oss completed.
call :ask_yes_no "Stop the import service, Yes or No:" yes
if "!ASK!"=="no" goto keep_running
echo [import] Stopping the import service (console.bat stop)...
call console.bat stop
call console.bat sandbox --stop
set "RC=0"
goto finish

:keep_running
echo [import] The import service keeps running; stop it with console.bat stop.
set "RC=0"
goto finish

:no_binary
echo [import] ossimport is not available; see the message above.
set "RC=2"
goto finish

:sandbox_failed
echo [import] Could not prepare the local sandbox destination (exit !RC!); check destDomain in conf\local_job.cfg.
set "RC=2"
goto finish

:check_failed
echo [import] A check failed (exit !RC!); fix what the FAIL line says and run import.bat again.
set "RC=2"
goto finish

:submit_failed
echo [import] Submit failed (exit !RC!); fix conf\local_job.cfg and run import.bat again.
set "RC=2"
goto finish

:clean_failed
echo [import] Clean failed; run 'console.bat stop' and 'console.bat clean' by hand.
set "RC=2"
goto finish

:start_failed
echo [import] Start failed (exit !RC!); see logs\ossimport2.log.
set "RC=2"
goto finish

:retry_failed
echo [import] Retry failed (exit !RC!).
set "RC=2"
goto finish

:failed_left
echo [import] Failed tasks left as they are; see master\jobs\local_test\failed_tasks\*\audit.log and error.list.
echo [import] Run console.bat retry later to retry them.
set "RC=2"
goto finish

:service_gone
echo [import] The import service is not running any more and the job did not finish; see logs\ossimport2.log.
echo [import] Run import.bat again and answer No to resume from the checkpoint.
set "RC=1"
goto finish

:no_status
echo [import] No job status after !MISSES! tries; see logs\ossimport2.log.
set "RC=1"
goto finish

:finish
if exist "%OUTF%" del /q "%OUTF%" >nul 2>nul
if defined PAUSE_AT_END pause
exit /b %RC%

rem ---------------------------------------------------------------------------
rem call :ask_yes_no "<prompt>" yes|no
rem Asks until the answer is y/Y/yes/Yes/YES or n/N/no/No/NO and sets ASK to
rem yes or no. set /p cannot tell an empty line from the end of input: after
rem three empty answers the second argument decides.
:ask_yes_no
set "ASK_PROMPT=%~1"
set "ASK_DEFAULT=%~2"
set "ASK_EMPTY=0"
:ask_again
set "ANSWER="
set /p "ANSWER=!ASK_PROMPT! "
if defined ANSWER goto ask_check
set /a ASK_EMPTY+=1
if !ASK_EMPTY! LSS 3 goto ask_again
echo.
if "!ASK_DEFAULT!"=="yes" echo [import] No answer: Yes.
if not "!ASK_DEFAULT!"=="yes" echo [import] No answer: No.
set "ASK=!ASK_DEFAULT!"
exit /b 0
:ask_check
set "ASK="
for %%Y in (y Y yes Yes YES) do if "!ANSWER!"=="%%Y" set "ASK=yes"
for %%N in (n N no No NO) do if "!ANSWER!"=="%%N" set "ASK=no"
if defined ASK exit /b 0
echo Please answer Yes or No.
set "ASK_EMPTY=0"
goto ask_again

rem call :sleep <seconds>: timeout refuses to run when input is redirected;
rem fall back to ping then.
:sleep
timeout /t %~1 /nobreak >nul 2>nul
if not errorlevel 1 exit /b 0
set /a "PINGS=%~1+1"
ping -n !PINGS! 127.0.0.1 >nul 2>nul
exit /b 0
