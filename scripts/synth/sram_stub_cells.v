// Blackbox declarations of the SRAM timing stubs (see sram_stub_map.v and sram_stub.liberty).
(* blackbox, keep *)
module spk_sram_q (input CLK, output Q);
endmodule
(* blackbox, keep *)
module spk_sram_d (input CLK, input D);
endmodule
(* blackbox, keep *)
module spk_sram_cs (input CLK, input D);
endmodule
// a buffer of the macro array's address and write-data trees; the sky130 flow makes it
// SRAM_TREE_BUFFER after ABC
(* blackbox, keep *)
module spk_sram_buf (input A, output X);
endmodule
// an AND gate of a read port's address tree (the address, its group's or bank's select);
// the sky130 flow makes it SRAM_TREE_AND after ABC
(* blackbox, keep *)
module spk_sram_and (input A, input B, output X);
endmodule
