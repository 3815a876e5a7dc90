# cmake -DIN=x.csv.xz -DOUT=x.csv -DSHA256=<hex> -P unpack.cmake
# Unpacks a reference trace and checks it is the file the tests expect.
execute_process(COMMAND xz -dc "${IN}" OUTPUT_FILE "${OUT}.tmp"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "xz -dc ${IN} failed (${rc}): apt-get install xz-utils")
endif()
file(SHA256 "${OUT}.tmp" got)
if(NOT got STREQUAL SHA256)
  message(FATAL_ERROR "${IN}: sha256 ${got}, expected ${SHA256}")
endif()
file(RENAME "${OUT}.tmp" "${OUT}")
