classdef Trial < scistack.BaseVariable
end
