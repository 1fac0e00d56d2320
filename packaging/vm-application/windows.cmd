@echo off
rem The VM Application commands for Windows (packaging/vm-application/README.md):
rem   windows.cmd install akvsync.msi   install or upgrade (the service starts)
rem   windows.cmd remove akvsync.msi    uninstall (settings, state and certificates kept)
if "%1"=="install" goto install
if "%1"=="remove" goto remove
echo usage: windows.cmd install PACKAGE.msi ^| remove PACKAGE.msi
exit /b 2
:install
if exist settings.json (
  if not exist "%ProgramData%\akvsync" mkdir "%ProgramData%\akvsync"
  copy /y settings.json "%ProgramData%\akvsync\settings.json" >nul
)
msiexec /i "%2" /qn /l*v akvsync-install.log
exit /b %errorlevel%
:remove
msiexec /x "%2" /qn /l*v akvsync-remove.log
exit /b %errorlevel%
